/** sdserve's public API: re-exports only. */
export { listenFds, inheritedSockets, LISTEN_FDS_START, type InheritedSocket, type ListenFdsOptions } from './activation.js'
export { listen, type ListenOptions, type ListenResult } from './listen.js'
export {
  Notifier,
  notifier,
  monotonicUsec,
  oneLine,
  isValidFdName,
  NOTIFY_MESSAGE_MAX,
  type NotifierOptions,
  type NotifyResult,
  type NotifyValue,
} from './notify.js'
export { startWatchdog, watchdogUsec, type Watchdog, type WatchdogOptions } from './watchdog.js'
export { parseBind, DEFAULT_BIND, type BindSpec } from './binds.js'
export {
  listenReusePort,
  sendFds,
  recvFds,
  setCloexec,
  getCloexec,
  socketInfo,
  socketPair,
  formatAddress,
  type SocketInfo,
  type SocketAddress,
  type ReceivedMessage,
  type ReusePortOptions,
} from './native.js'
export {
  ErrorCode,
  SdserveError,
  ConfigError,
  InvalidArgumentError,
  ActivationError,
  NotifyError,
  NativeLoadError,
  type SystemError,
} from './errors.js'
