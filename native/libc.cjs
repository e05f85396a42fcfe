// Which libc this machine's prebuild is for, decided the way node-gyp-build
// decides it when it matches prebuilds/*/node.napi.<libc>.node: LIBC when set,
// else musl on Alpine (the only musl system it knows), else glibc.
// The one copy of that rule, for install.mjs's message at `npm install` (no
// TypeScript built yet, so no dist/) and for lib/native.ts's NativeLoadError.
// CommonJS so that dist/lib/native.js can require() it synchronously on any
// Node 20; it finds it at ../../native/ in the checkout and the package alike.
'use strict'
const { existsSync } = require('node:fs')

exports.libc = function libc(env = process.env) {
  /* c8 ignore next -- musl is found on Alpine only */
  return env.LIBC || (existsSync('/etc/alpine-release') ? 'musl' : 'glibc')
}
