/* sdserve native primitives: plain C over libc, no Node-API in here.
 * Every function returns >= 0 on success or -errno on failure; no function
 * prints, allocates on the heap, or keeps state. */
#ifndef SDSERVE_H
#define SDSERVE_H

#include <stddef.h>
#include <stdint.h>

/* The kernel's SCM_MAX_FD: the most fds one sendmsg() may carry. */
#define SDS_MAX_FDS 253
/* Longest AF_UNIX address text we report (sun_path is 108 bytes). */
#define SDS_PATH_MAX 110

struct sds_sockinfo {
  int family;        /* AF_INET, AF_INET6, AF_UNIX, ... */
  int type;          /* SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET, ... */
  int listening;     /* SO_ACCEPTCONN */
  int reuseport;     /* SO_REUSEPORT */
  int port;          /* AF_INET/AF_INET6, host byte order */
  char host[64];     /* AF_INET/AF_INET6: numeric address, no brackets */
  char path[SDS_PATH_MAX]; /* AF_UNIX: path, or name without the leading NUL */
  size_t path_len;   /* bytes in path (abstract names may hold NULs) */
  int abstract;      /* AF_UNIX: 1 when the name is in the abstract namespace */
};

/* A TCP listening socket with SO_REUSEADDR (and SO_REUSEPORT when reuseport
 * is non-zero), created SOCK_CLOEXEC | SOCK_NONBLOCK. family is AF_INET or
 * AF_INET6; host is a numeric address. Returns the fd. */
int sds_listen_tcp(int family, const char *host, int port, int backlog, int v6only, int reuseport);

/* A UNIX stream listening socket at path, close-on-exec and non-blocking.
 * The file gets mode (when >= 0) and owner (uid/gid when >= 0) before
 * listen(), so no client can connect while the permissions are wrong; on
 * failure after bind() the file is removed. Returns the fd. */
int sds_listen_unix(const char *path, int backlog, int mode, int uid, int gid);

/* sendmsg() of payload (at least one byte) with fds as SCM_RIGHTS. */
int sds_send_fds(int sock, const void *payload, size_t len, const int *fds, size_t nfds);

/* recvmsg() into payload; received fds are stored in fds (at most maxfds) and
 * are close-on-exec. A message whose fds did not fit is discarded whole
 * (every fd that arrived is closed) and -EMSGSIZE returned. Returns bytes. */
int sds_recv_fds(int sock, void *payload, size_t len, int *fds, size_t maxfds, size_t *nfds);

/* One sd_notify datagram to an AF_UNIX address: an absolute path, or
 * '@name' for the abstract namespace. Returns bytes sent. */
int sds_notify(const char *addr, size_t addr_len, const void *msg, size_t len, const int *fds, size_t nfds);

int sds_set_cloexec(int fd, int on);
/* 1 when FD_CLOEXEC is set, 0 when not. */
int sds_get_cloexec(int fd);

int sds_socket_info(int fd, struct sds_sockinfo *out);

struct sds_peercred {
  int pid;
  unsigned uid;
  unsigned gid;
};

/* SO_PEERCRED: who is on the other end of a connected UNIX stream socket. */
int sds_peer_credentials(int fd, struct sds_peercred *out);

struct sds_listenq {
  unsigned queued;  /* connections waiting for accept() */
  unsigned backlog; /* the most that may wait (listen()'s backlog, capped by somaxconn) */
};

/* The accept queue of a listening stream socket: TCP_INFO for AF_INET and
 * AF_INET6, NETLINK_SOCK_DIAG (UNIX_DIAG_RQLEN) for AF_UNIX, where SIOCINQ is
 * EINVAL on a listener. -EINVAL when fd is not listening; -EAFNOSUPPORT for
 * another family, or when netlink sockets are forbidden (seccomp, systemd's
 * RestrictAddressFamilies). */
int sds_listen_queue(int fd, struct sds_listenq *out);

/* An AF_UNIX socket pair of the given type, both ends close-on-exec and non-blocking. */
int sds_socketpair(int type, int fds[2]);

/* A pipe, both ends close-on-exec and non-blocking. fds[0] reads, fds[1] writes. */
int sds_pipe(int fds[2]);

/* The inode number of a pidfd for this process: what systemd puts in
 * LISTEN_PIDFDID. -ENOSYS where the kernel has no pidfds. */
int sds_pidfd_id_self(uint64_t *out);

#endif
