/* Node-API glue only: argument conversion and result objects. The system work
 * is in socket.c; every error text is made in TypeScript (lib/native.ts). */
#include <errno.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sdserve.h"

#define MAX_PAYLOAD (1 << 20)

/* Throw a TypeError with a Node-style code; returns NULL for the caller. */
static napi_value type_error(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

static napi_value range_error(napi_env env, const char *msg) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
  return NULL;
}

static napi_value make_int(napi_env env, int v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

/* Fetch exactly `want` arguments; a missing one is undefined, which every
 * getter below rejects with a TypeError. */
static int get_args(napi_env env, napi_callback_info info, napi_value *argv, size_t want) {
  size_t argc = want;
  size_t i;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  for (i = argc; i < want; i++) napi_get_undefined(env, &argv[i]);
  return 1;
}

static int get_int(napi_env env, napi_value v, int32_t *out, const char *what) {
  napi_valuetype t;
  double d;
  napi_typeof(env, v, &t);
  if (t != napi_number) {
    type_error(env, what);
    return 0;
  }
  napi_get_value_double(env, v, &d);
  /* Range first: casting NaN, infinities or out-of-range doubles is undefined behaviour. */
  if (!(d >= -2147483648.0 && d <= 2147483647.0) || d != (double)(int32_t)d) {
    range_error(env, what);
    return 0;
  }
  *out = (int32_t)d;
  return 1;
}

static int get_bool(napi_env env, napi_value v, int *out, const char *what) {
  bool b;
  if (napi_get_value_bool(env, v, &b) != napi_ok) {
    type_error(env, what);
    return 0;
  }
  *out = b ? 1 : 0;
  return 1;
}

/* A string argument copied into buf (NUL-terminated); len receives its byte length. */
static int get_string(napi_env env, napi_value v, char *buf, size_t cap, size_t *len, const char *what) {
  size_t n;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) {
    type_error(env, what);
    return 0;
  }
  if (n + 1 > cap) {
    range_error(env, what);
    return 0;
  }
  napi_get_value_string_utf8(env, v, buf, cap, &n);
  *len = n;
  return 1;
}

static int get_buffer(napi_env env, napi_value v, void **data, size_t *len, const char *what) {
  bool is;
  napi_is_buffer(env, v, &is);
  if (!is) {
    type_error(env, what);
    return 0;
  }
  napi_get_buffer_info(env, v, data, len);
  if (*len > MAX_PAYLOAD) {
    range_error(env, what);
    return 0;
  }
  return 1;
}

/* An array of fd numbers (each >= 0), at most SDS_MAX_FDS. */
static int get_fd_array(napi_env env, napi_value v, int *fds, size_t *nfds, const char *what) {
  bool is;
  uint32_t n, i;
  napi_is_array(env, v, &is);
  if (!is) {
    type_error(env, what);
    return 0;
  }
  napi_get_array_length(env, v, &n);
  if (n > SDS_MAX_FDS) {
    range_error(env, what);
    return 0;
  }
  for (i = 0; i < n; i++) {
    napi_value e;
    int32_t fd;
    napi_get_element(env, v, i, &e);
    if (!get_int(env, e, &fd, what)) return 0;
    if (fd < 0) {
      range_error(env, what);
      return 0;
    }
    fds[i] = fd;
  }
  *nfds = n;
  return 1;
}

static int get_fd(napi_env env, napi_value v, int32_t *fd) {
  if (!get_int(env, v, fd, "fd must be an integer")) return 0;
  if (*fd < 0) {
    range_error(env, "fd must be >= 0");
    return 0;
  }
  return 1;
}

/* listenTcp(family, host, port, backlog, v6only, reuseport) -> fd | -errno */
static napi_value listen_tcp(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  int32_t family, port, backlog;
  int v6only, reuseport;
  char host[64];
  size_t hlen;
  if (!get_args(env, info, argv, 6)) return NULL;
  if (!get_int(env, argv[0], &family, "family must be an integer") ||
      !get_string(env, argv[1], host, sizeof host, &hlen, "host must be a numeric IP address string") ||
      !get_int(env, argv[2], &port, "port must be an integer") ||
      !get_int(env, argv[3], &backlog, "backlog must be an integer") ||
      !get_bool(env, argv[4], &v6only, "v6only must be a boolean") ||
      !get_bool(env, argv[5], &reuseport, "reuseport must be a boolean"))
    return NULL;
  return make_int(env, sds_listen_tcp(family, host, port, backlog, v6only, reuseport));
}

/* listenUnix(path, backlog, mode, uid, gid) -> fd | -errno; -1 leaves mode or owner as they are */
static napi_value listen_unix(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  char path[SDS_PATH_MAX];
  size_t plen;
  int32_t backlog, mode, uid, gid;
  if (!get_args(env, info, argv, 5)) return NULL;
  if (!get_string(env, argv[0], path, sizeof path, &plen, "path must be a string of at most 107 bytes") ||
      !get_int(env, argv[1], &backlog, "backlog must be an integer") ||
      !get_int(env, argv[2], &mode, "mode must be an integer") ||
      !get_int(env, argv[3], &uid, "uid must be an integer") || !get_int(env, argv[4], &gid, "gid must be an integer"))
    return NULL;
  return make_int(env, sds_listen_unix(path, backlog, mode, uid, gid));
}

/* sendFds(sock, payload, fds) -> bytes | -errno */
static napi_value send_fds(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t sock;
  void *data;
  size_t len, nfds;
  int fds[SDS_MAX_FDS];
  if (!get_args(env, info, argv, 3)) return NULL;
  if (!get_fd(env, argv[0], &sock) ||
      !get_buffer(env, argv[1], &data, &len, "payload must be a Buffer of at most 1 MiB") ||
      !get_fd_array(env, argv[2], fds, &nfds, "fds must be an array of at most 253 fd numbers"))
    return NULL;
  return make_int(env, sds_send_fds(sock, data, len, fds, nfds));
}

/* recvFds(sock, maxPayload, maxFds) -> { bytes, payload, fds } | -errno */
static napi_value recv_fds(napi_env env, napi_callback_info info) {
  napi_value argv[3], out, buf, arr;
  int32_t sock, max_payload, max_fds;
  int fds[SDS_MAX_FDS];
  size_t nfds, i;
  void *data;
  int r;
  if (!get_args(env, info, argv, 3)) return NULL;
  if (!get_fd(env, argv[0], &sock) ||
      !get_int(env, argv[1], &max_payload, "maxPayload must be an integer") ||
      !get_int(env, argv[2], &max_fds, "maxFds must be an integer"))
    return NULL;
  if (max_payload < 1 || max_payload > MAX_PAYLOAD)
    return range_error(env, "maxPayload must be between 1 and 1048576");
  if (max_fds < 0 || max_fds > SDS_MAX_FDS) return range_error(env, "maxFds must be between 0 and 253");
  data = malloc((size_t)max_payload);
  if (data == NULL) return make_int(env, -ENOMEM);
  r = sds_recv_fds(sock, data, (size_t)max_payload, fds, (size_t)max_fds, &nfds);
  if (r < 0) {
    free(data);
    return make_int(env, r);
  }
  napi_create_buffer_copy(env, (size_t)r, data, NULL, &buf);
  free(data);
  napi_create_array_with_length(env, nfds, &arr);
  for (i = 0; i < nfds; i++) napi_set_element(env, arr, (uint32_t)i, make_int(env, fds[i]));
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "bytes", make_int(env, r));
  napi_set_named_property(env, out, "payload", buf);
  napi_set_named_property(env, out, "fds", arr);
  return out;
}

/* notify(address, message, fds) -> bytes | -errno */
static napi_value notify(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char addr[SDS_PATH_MAX + 4];
  size_t alen, len, nfds;
  void *data;
  int fds[SDS_MAX_FDS];
  if (!get_args(env, info, argv, 3)) return NULL;
  if (!get_string(env, argv[0], addr, sizeof addr, &alen, "address must be a string of at most 108 bytes") ||
      !get_buffer(env, argv[1], &data, &len, "message must be a Buffer of at most 1 MiB") ||
      !get_fd_array(env, argv[2], fds, &nfds, "fds must be an array of at most 253 fd numbers"))
    return NULL;
  return make_int(env, sds_notify(addr, alen, data, len, fds, nfds));
}

static napi_value set_cloexec(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  int on;
  if (!get_args(env, info, argv, 2)) return NULL;
  if (!get_fd(env, argv[0], &fd) || !get_bool(env, argv[1], &on, "on must be a boolean")) return NULL;
  return make_int(env, sds_set_cloexec(fd, on));
}

static napi_value get_cloexec(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (!get_args(env, info, argv, 1)) return NULL;
  if (!get_fd(env, argv[0], &fd)) return NULL;
  return make_int(env, sds_get_cloexec(fd));
}

/* socketInfo(fd) -> { family, type, listening, reusePort, host, port, path, abstract } | -errno */
static napi_value socket_info(napi_env env, napi_callback_info info) {
  napi_value argv[1], out, v;
  int32_t fd;
  struct sds_sockinfo si;
  int r;
  if (!get_args(env, info, argv, 1)) return NULL;
  if (!get_fd(env, argv[0], &fd)) return NULL;
  r = sds_socket_info(fd, &si);
  if (r < 0) return make_int(env, r);
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "family", make_int(env, si.family));
  napi_set_named_property(env, out, "type", make_int(env, si.type));
  napi_get_boolean(env, si.listening != 0, &v);
  napi_set_named_property(env, out, "listening", v);
  napi_get_boolean(env, si.reuseport != 0, &v);
  napi_set_named_property(env, out, "reusePort", v);
  napi_create_string_utf8(env, si.host, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, out, "host", v);
  napi_set_named_property(env, out, "port", make_int(env, si.port));
  /* A Buffer: abstract names may hold any byte, including NUL. */
  napi_create_buffer_copy(env, si.path_len, si.path, NULL, &v);
  napi_set_named_property(env, out, "path", v);
  napi_get_boolean(env, si.abstract != 0, &v);
  napi_set_named_property(env, out, "abstract", v);
  return out;
}

static napi_value make_uint(napi_env env, unsigned v) {
  napi_value out;
  napi_create_uint32(env, v, &out);
  return out;
}

/* peerCredentials(fd) -> { pid, uid, gid } | -errno */
static napi_value peer_credentials(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  int32_t fd;
  struct sds_peercred pc;
  int r;
  if (!get_args(env, info, argv, 1)) return NULL;
  if (!get_fd(env, argv[0], &fd)) return NULL;
  r = sds_peer_credentials(fd, &pc);
  if (r < 0) return make_int(env, r);
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "pid", make_int(env, pc.pid));
  napi_set_named_property(env, out, "uid", make_uint(env, pc.uid));
  napi_set_named_property(env, out, "gid", make_uint(env, pc.gid));
  return out;
}

/* listenQueue(fd) -> { queued, backlog } | -errno */
static napi_value listen_queue(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  int32_t fd;
  struct sds_listenq lq;
  int r;
  if (!get_args(env, info, argv, 1)) return NULL;
  if (!get_fd(env, argv[0], &fd)) return NULL;
  r = sds_listen_queue(fd, &lq);
  if (r < 0) return make_int(env, r);
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "queued", make_uint(env, lq.queued));
  napi_set_named_property(env, out, "backlog", make_uint(env, lq.backlog));
  return out;
}

static napi_value pair_result(napi_env env, int r, const int fds[2]) {
  napi_value arr;
  if (r < 0) return make_int(env, r);
  napi_create_array_with_length(env, 2, &arr);
  napi_set_element(env, arr, 0, make_int(env, fds[0]));
  napi_set_element(env, arr, 1, make_int(env, fds[1]));
  return arr;
}

static napi_value socket_pair(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t type;
  int fds[2] = {-1, -1};
  if (!get_args(env, info, argv, 1)) return NULL;
  if (!get_int(env, argv[0], &type, "type must be an integer")) return NULL;
  return pair_result(env, sds_socketpair(type, fds), fds);
}

static napi_value make_pipe(napi_env env, napi_callback_info info) {
  int fds[2] = {-1, -1};
  (void)info;
  return pair_result(env, sds_pipe(fds), fds);
}

static napi_value pidfd_id_self(napi_env env, napi_callback_info info) {
  uint64_t id = 0;
  napi_value out;
  int r;
  (void)info;
  r = sds_pidfd_id_self(&id);
  if (r < 0) return make_int(env, r);
  napi_create_bigint_uint64(env, id, &out);
  return out;
}

static void set_const(napi_env env, napi_value obj, const char *name, int v) {
  napi_set_named_property(env, obj, name, make_int(env, v));
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor fns[] = {
      {"listenTcp", NULL, listen_tcp, NULL, NULL, NULL, napi_enumerable, NULL},
      {"listenUnix", NULL, listen_unix, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendFds", NULL, send_fds, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvFds", NULL, recv_fds, NULL, NULL, NULL, napi_enumerable, NULL},
      {"notify", NULL, notify, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setCloexec", NULL, set_cloexec, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getCloexec", NULL, get_cloexec, NULL, NULL, NULL, napi_enumerable, NULL},
      {"socketInfo", NULL, socket_info, NULL, NULL, NULL, napi_enumerable, NULL},
      {"peerCredentials", NULL, peer_credentials, NULL, NULL, NULL, napi_enumerable, NULL},
      {"listenQueue", NULL, listen_queue, NULL, NULL, NULL, napi_enumerable, NULL},
      {"socketPair", NULL, socket_pair, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pipe", NULL, make_pipe, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pidfdIdSelf", NULL, pidfd_id_self, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_value consts;
  napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns);
  napi_create_object(env, &consts);
  set_const(env, consts, "AF_UNIX", AF_UNIX);
  set_const(env, consts, "AF_INET", AF_INET);
  set_const(env, consts, "AF_INET6", AF_INET6);
  set_const(env, consts, "SOCK_STREAM", SOCK_STREAM);
  set_const(env, consts, "SOCK_DGRAM", SOCK_DGRAM);
  set_const(env, consts, "SOCK_SEQPACKET", SOCK_SEQPACKET);
  set_const(env, consts, "MAX_FDS", SDS_MAX_FDS);
  napi_set_named_property(env, exports, "constants", consts);
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
