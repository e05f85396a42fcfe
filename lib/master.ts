/** The master and its parts live in lib/master/; this is their import path. */
export { Master, type MasterOptions } from './master/master.js'
export type { MasterEvents } from './master/events.js'
export type { Phase } from './master/phase.js'
export { loggerFor, runMaster } from './master/run.js'
