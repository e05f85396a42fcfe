#include "sdserve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
/* The pidfs magic: only on pidfs are pidfd inode numbers unique per process. */
#define SDS_PIDFS_MAGIC 0x50494446

static int neg_errno(void) { return errno > 0 ? -errno : -EIO; }

/* close() that keeps the errno the caller is about to report. */
static void close_keep_errno(int fd) {
  int saved = errno;
  close(fd);
  errno = saved;
}

int sds_listen_tcp(int family, const char *host, int port, int backlog, int v6only, int reuseport) {
  struct sockaddr_storage ss;
  socklen_t sslen;
  int one = 1;
  int fd;

  if (port < 0 || port > 65535 || backlog < 0) return -EINVAL;
  memset(&ss, 0, sizeof ss);
  if (family == AF_INET) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) return -EINVAL;
    sslen = sizeof *sin;
  } else if (family == AF_INET6) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) return -EINVAL;
    sslen = sizeof *sin6;
  } else {
    return -EAFNOSUPPORT;
  }

  fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return neg_errno();
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
      (family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0) ||
      bind(fd, (struct sockaddr *)&ss, sslen) < 0 || listen(fd, backlog) < 0) {
    close_keep_errno(fd);
    return neg_errno();
  }
  return fd;
}

int sds_listen_unix(const char *path, int backlog, int mode, int uid, int gid) {
  struct sockaddr_un sun;
  size_t len = strlen(path);
  int fd;

  if (backlog < 0 || path[0] != '/') return -EINVAL;
  if (len >= sizeof sun.sun_path) return -ENAMETOOLONG;
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  memcpy(sun.sun_path, path, len);

  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return neg_errno();
  if (bind(fd, (struct sockaddr *)&sun, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1)) < 0) {
    close_keep_errno(fd);
    return neg_errno();
  }
  if ((mode >= 0 && chmod(path, (mode_t)mode) < 0) ||
      ((uid >= 0 || gid >= 0) && chown(path, (uid_t)uid, (gid_t)gid) < 0) || listen(fd, backlog) < 0) {
    int saved = errno;
    unlink(path);
    close(fd);
    errno = saved;
    return neg_errno();
  }
  return fd;
}

int sds_send_fds(int sock, const void *payload, size_t len, const int *fds, size_t nfds) {
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * SDS_MAX_FDS)];
  } control;
  struct iovec iov = {.iov_base = (void *)payload, .iov_len = len};
  struct msghdr msg;
  ssize_t n;

  if (len == 0 || nfds > SDS_MAX_FDS) return -EINVAL;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > 0) {
    struct cmsghdr *cmsg;
    memset(&control, 0, sizeof control);
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
  }
  do {
    n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n < 0 ? neg_errno() : (int)n;
}

int sds_recv_fds(int sock, void *payload, size_t len, int *fds, size_t maxfds, size_t *nfds) {
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * SDS_MAX_FDS)];
  } control;
  struct iovec iov = {.iov_base = payload, .iov_len = len};
  struct msghdr msg;
  struct cmsghdr *cmsg;
  ssize_t n;
  size_t got = 0;
  int truncated;

  *nfds = 0;
  if (len == 0 || maxfds > SDS_MAX_FDS) return -EINVAL;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return neg_errno();

  truncated = (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) != 0;
  for (cmsg = CMSG_FIRSTHDR(&msg); cmsg != NULL; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
    size_t i, count;
    const unsigned char *data;
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    data = CMSG_DATA(cmsg);
    for (i = 0; i < count; i++) {
      int fd;
      memcpy(&fd, data + i * sizeof(int), sizeof fd);
      if (got < maxfds) fds[got++] = fd;
      else {
        close(fd);
        truncated = 1;
      }
    }
  }
  if (truncated) {
    /* Never hand the caller half a message: the sender's fds are all or nothing. */
    size_t i;
    for (i = 0; i < got; i++) close(fds[i]);
    return -EMSGSIZE;
  }
  *nfds = got;
  return (int)n;
}

int sds_notify(const char *addr, size_t addr_len, const void *msg, size_t len, const int *fds, size_t nfds) {
  struct sockaddr_un sun;
  socklen_t sunlen;
  int fd, r;

  if (addr_len < 2) return -EINVAL;
  if (addr_len > sizeof sun.sun_path) return -ENAMETOOLONG;
  if (addr[0] != '/' && addr[0] != '@') return -EAFNOSUPPORT;
  memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  memcpy(sun.sun_path, addr, addr_len);
  if (addr[0] == '@') {
    /* Abstract: a leading NUL, and the length counts only the name's bytes. */
    sun.sun_path[0] = '\0';
    sunlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + addr_len);
  } else {
    if (memchr(addr, '\0', addr_len) != NULL) return -EINVAL;
    if (addr_len >= sizeof sun.sun_path) return -ENAMETOOLONG;
    sunlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + addr_len + 1);
  }

  /* Blocking, unlike every other socket here, but for at most a second: a
   * full systemd queue must neither freeze the caller's event loop for long
   * nor drop READY=1 at the first moment of congestion (EAGAIN after 1 s). */
  fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return neg_errno();
  {
    struct timeval tv = {.tv_sec = 1, .tv_usec = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  if (connect(fd, (struct sockaddr *)&sun, sunlen) < 0) {
    close_keep_errno(fd);
    return neg_errno();
  }
  r = sds_send_fds(fd, msg, len, fds, nfds);
  close(fd);
  return r;
}

int sds_set_cloexec(int fd, int on) {
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0) return neg_errno();
  flags = on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC);
  if (fcntl(fd, F_SETFD, flags) < 0) return neg_errno();
  return 0;
}

int sds_get_cloexec(int fd) {
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0) return neg_errno();
  return (flags & FD_CLOEXEC) ? 1 : 0;
}

static int get_int_opt(int fd, int level, int name, int *out) {
  socklen_t len = sizeof *out;
  if (getsockopt(fd, level, name, out, &len) < 0) return neg_errno();
  return 0;
}

int sds_socket_info(int fd, struct sds_sockinfo *out) {
  struct sockaddr_storage ss;
  socklen_t sslen = sizeof ss;
  int r;

  memset(out, 0, sizeof *out);
  if ((r = get_int_opt(fd, SOL_SOCKET, SO_TYPE, &out->type)) < 0) return r;
  if ((r = get_int_opt(fd, SOL_SOCKET, SO_DOMAIN, &out->family)) < 0) return r;
  if ((r = get_int_opt(fd, SOL_SOCKET, SO_ACCEPTCONN, &out->listening)) < 0) return r;
  if ((r = get_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, &out->reuseport)) < 0) return r;
  memset(&ss, 0, sizeof ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) return neg_errno();

  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &sin->sin_addr, out->host, sizeof out->host);
    out->port = ntohs(sin->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &sin6->sin6_addr, out->host, sizeof out->host);
    out->port = ntohs(sin6->sin6_port);
  } else if (ss.ss_family == AF_UNIX) {
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&ss;
    size_t n = sslen > offsetof(struct sockaddr_un, sun_path)
                   ? sslen - offsetof(struct sockaddr_un, sun_path)
                   : 0;
    if (n > sizeof sun->sun_path) n = sizeof sun->sun_path;
    if (n > 0 && sun->sun_path[0] == '\0') {
      out->abstract = 1;
      out->path_len = n - 1;
      memcpy(out->path, sun->sun_path + 1, n - 1);
    } else if (n > 0) {
      out->path_len = strnlen(sun->sun_path, n);
      memcpy(out->path, sun->sun_path, out->path_len);
    }
  }
  return 0;
}

int sds_socketpair(int type, int fds[2]) {
  if (socketpair(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) < 0) return neg_errno();
  return 0;
}

int sds_pipe(int fds[2]) {
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) return neg_errno();
  return 0;
}

/* The inode number of fd. On glibc through statx (2.28): fstat is a symbol
 * of glibc 2.33, and using it would keep the prebuilt addon from loading on
 * glibc 2.28 to 2.32, which Node 20 supports. musl (before 1.2.5) has no statx. */
static int inode_of(int fd, uint64_t *ino) {
#ifdef __GLIBC__
  struct statx stx;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_INO, &stx) < 0) return -1;
  *ino = (uint64_t)stx.stx_ino;
#else
  struct stat st;
  if (fstat(fd, &st) < 0) return -1;
  *ino = (uint64_t)st.st_ino;
#endif
  return 0;
}

int sds_pidfd_id_self(uint64_t *out) {
  struct statfs sfs;
  uint64_t ino;
  int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  if (fd < 0) return neg_errno();
  if (fstatfs(fd, &sfs) < 0 || inode_of(fd, &ino) < 0) {
    close_keep_errno(fd);
    return neg_errno();
  }
  if ((unsigned long)sfs.f_type != SDS_PIDFS_MAGIC) {
    close(fd);
    return -EOPNOTSUPP;
  }
  close(fd);
  *out = ino;
  return 0;
}

int sds_peer_credentials(int fd, struct sds_peercred *out) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  memset(&cred, 0, sizeof cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return neg_errno();
  out->pid = (int)cred.pid;
  out->uid = (unsigned)cred.uid;
  out->gid = (unsigned)cred.gid;
  return 0;
}

/* For a listener the kernel reports the accept queue in tcpi_unacked and the
 * backlog in tcpi_sacked (tcp_get_info()). */
static int tcp_listen_queue(int fd, struct sds_listenq *out) {
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  memset(&ti, 0, sizeof ti);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) return neg_errno();
  out->queued = ti.tcpi_unacked;
  out->backlog = ti.tcpi_sacked;
  return 0;
}

/* NETLINK_SOCK_DIAG's wire format for AF_UNIX, from the kernel's uapi headers
 * (linux/netlink.h, linux/sock_diag.h, linux/unix_diag.h; a stable ABI),
 * spelled out because the musl toolchain ships no kernel headers. */
#define SDS_NETLINK_SOCK_DIAG 4
#define SDS_SOCK_DIAG_BY_FAMILY 20
#define SDS_NLM_F_REQUEST 0x01
#define SDS_NLMSG_ERROR 0x2
#define SDS_NLMSG_DONE 0x3
#define SDS_UDIAG_SHOW_RQLEN 0x10
#define SDS_UNIX_DIAG_RQLEN 4
#define SDS_ALIGN4(n) (((n) + 3U) & ~3U)

struct sds_nlmsghdr {
  uint32_t len;
  uint16_t type;
  uint16_t flags;
  uint32_t seq;
  uint32_t pid;
};
struct sds_sockaddr_nl {
  sa_family_t family;
  unsigned short pad;
  uint32_t pid;
  uint32_t groups;
};
struct sds_unix_diag_req {
  uint8_t family;
  uint8_t protocol;
  uint16_t pad;
  uint32_t states;
  uint32_t ino;
  uint32_t show;
  uint32_t cookie[2];
};
struct sds_unix_diag_msg {
  uint8_t family;
  uint8_t type;
  uint8_t state;
  uint8_t pad;
  uint32_t ino;
  uint32_t cookie[2];
};
struct sds_rtattr {
  uint16_t len;
  uint16_t type;
};
struct sds_unix_diag_rqlen {
  uint32_t rqueue;
  uint32_t wqueue;
};

/* Find UNIX_DIAG_RQLEN in one sock_diag reply (msg, len bytes after the
 * netlink header) about inode ino: for a listener the read queue is the
 * accept queue and the write queue the backlog. */
static int parse_unix_diag(const char *msg, size_t len, uint32_t ino, struct sds_listenq *out) {
  struct sds_unix_diag_msg dm;
  size_t off = SDS_ALIGN4(sizeof dm);
  if (len < sizeof dm) return -ENOENT;
  memcpy(&dm, msg, sizeof dm);
  if (dm.ino != ino) return -ENOENT;
  while (off + sizeof(struct sds_rtattr) <= len) {
    struct sds_rtattr attr;
    memcpy(&attr, msg + off, sizeof attr);
    if (attr.len < sizeof attr || attr.len > len - off) break;
    if (attr.type == SDS_UNIX_DIAG_RQLEN && attr.len >= sizeof attr + sizeof(struct sds_unix_diag_rqlen)) {
      struct sds_unix_diag_rqlen rq;
      memcpy(&rq, msg + off + sizeof attr, sizeof rq);
      out->queued = rq.rqueue;
      out->backlog = rq.wqueue;
      return 0;
    }
    off += SDS_ALIGN4(attr.len);
  }
  return -ENOENT;
}

static int unix_listen_queue(int fd, struct sds_listenq *out) {
  struct {
    struct sds_nlmsghdr nlh;
    struct sds_unix_diag_req req;
  } request;
  union {
    uint32_t align;
    char buf[8192];
  } reply;
  struct sds_sockaddr_nl kernel;
  uint64_t ino;
  ssize_t n;
  size_t off, len;
  int nl, r = -ENOENT;

  if (inode_of(fd, &ino) < 0) return neg_errno();
  memset(&request, 0, sizeof request);
  request.nlh.len = sizeof request;
  request.nlh.type = SDS_SOCK_DIAG_BY_FAMILY;
  request.nlh.flags = SDS_NLM_F_REQUEST;
  request.req.family = AF_UNIX;
  request.req.states = 1U << TCP_LISTEN;
  request.req.ino = (uint32_t)ino; /* socket inodes are 32-bit (get_next_ino()) */
  request.req.show = SDS_UDIAG_SHOW_RQLEN;
  /* An exact lookup by inode, whatever its cookie (INET_DIAG_NOCOOKIE). */
  request.req.cookie[0] = ~0U;
  request.req.cookie[1] = ~0U;
  memset(&kernel, 0, sizeof kernel);
  kernel.family = AF_NETLINK;

  nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, SDS_NETLINK_SOCK_DIAG);
  if (nl < 0) return neg_errno();
  do {
    n = sendto(nl, &request, sizeof request, 0, (const struct sockaddr *)&kernel, sizeof kernel);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    close_keep_errno(nl);
    return neg_errno();
  }
  /* The kernel answers an exact request while sendto() runs: never wait. */
  do {
    n = recv(nl, reply.buf, sizeof reply.buf, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    close_keep_errno(nl);
    return neg_errno();
  }
  close(nl);
  len = (size_t)n;
  for (off = 0; off + sizeof(struct sds_nlmsghdr) <= len;) {
    struct sds_nlmsghdr h;
    const char *body = reply.buf + off + sizeof h;
    memcpy(&h, reply.buf + off, sizeof h);
    if (h.len < sizeof h || h.len > len - off) break;
    if (h.type == SDS_NLMSG_ERROR) {
      int error;
      if (h.len >= sizeof h + sizeof error) {
        memcpy(&error, body, sizeof error);
        if (error < 0) return error;
      }
    } else if (h.type == SDS_SOCK_DIAG_BY_FAMILY) {
      r = parse_unix_diag(body, h.len - sizeof h, (uint32_t)ino, out);
      if (r == 0) return 0;
    } else if (h.type == SDS_NLMSG_DONE) {
      break;
    }
    off += SDS_ALIGN4(h.len);
  }
  return r;
}

int sds_listen_queue(int fd, struct sds_listenq *out) {
  int family, type, listening, r;
  memset(out, 0, sizeof *out);
  if ((r = get_int_opt(fd, SOL_SOCKET, SO_DOMAIN, &family)) < 0) return r;
  if ((r = get_int_opt(fd, SOL_SOCKET, SO_TYPE, &type)) < 0) return r;
  if ((r = get_int_opt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening)) < 0) return r;
  if (!listening || type != SOCK_STREAM) return -EINVAL;
  if (family == AF_INET || family == AF_INET6) return tcp_listen_queue(fd, out);
  if (family == AF_UNIX) return unix_listen_queue(fd, out);
  return -EAFNOSUPPORT;
}
