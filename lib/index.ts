/** sdserve's public API: re-exports only. */
export { listenFds, inheritedSockets, LISTEN_FDS_START, type InheritedSocket, type ListenFdsOptions } from './activation.js'
export { listen, type ListenOptions, type ListenResult } from './listen.js'
export {
  Notifier,
  notifier,
  monotonicUsec,
  oneLine,
  NOTIFY_MESSAGE_MAX,
  type NotifierOptions,
  type NotifyResult,
  type NotifyValue,
} from './notify.js'
export { isValidFdName } from './limits.js'
export { startWatchdog, watchdogUsec, type Watchdog, type WatchdogOptions } from './watchdog.js'
export { parseBind, DEFAULT_BIND, type BindSpec } from './binds.js'
export { serve, isWorker, type ServeOptions, type ServerHandle } from './serve.js'
export { drainSignal, draining, onDrain, type DrainInfo, type DrainReason } from './drain.js'
export { Master, type MasterEvents, type MasterOptions } from './master.js'
export { type Config, type Balance } from './config.js'
export { loadApp, parseAppSpec, type AppTarget, type RequestHandler } from './app.js'
export { Logger, type LogLevel } from './logger.js'
export { client, CLIENT, AllowList, DEFAULT_FORWARDED_ALLOW_IPS, type ClientInfo, type Peer } from './http/proxy.js'
export { parseProxyHeader, readProxyHeader, ProxyProtocolError, type ProxyHeader } from './http/proxy-protocol.js'
export {
  listenReusePort,
  sendFds,
  recvFds,
  setCloexec,
  getCloexec,
  socketInfo,
  socketPair,
  formatAddress,
  peerCredentials,
  listenQueue,
  type SocketInfo,
  type SocketAddress,
  type ReceivedMessage,
  type ReusePortOptions,
  type PeerCredentials,
  type ListenQueue,
} from './native.js'
export {
  ErrorCode,
  SdserveError,
  ConfigError,
  InvalidArgumentError,
  ActivationError,
  NotifyError,
  NativeLoadError,
  AppLoadError,
  WorkerBootError,
  ExitCode,
  type SystemError,
} from './errors.js'
