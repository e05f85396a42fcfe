#!/usr/bin/env node
/**
 * The `sdserve` program (package.json's bin). It turns on the compile cache
 * first, then imports the command, so that the command's modules are
 * compiled with the cache (lib/compile-cache.ts).
 */
import { enableCompileCache } from './compile-cache.js'

enableCompileCache()
const { runAsProgram } = await import('./command.js')
runAsProgram()
