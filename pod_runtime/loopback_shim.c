/* A pod's own IP on a shared loopback: preloaded into every process of a pod when
 * the pod runtime runs without root (pod_runtime/network.py, LoopbackNetwork).
 *
 * All pods share the host's network stack; each has two addresses of its own in
 * 127.0.0.0/8: its pod IP (POD_RUNTIME_IP) and its private localhost
 * (POD_RUNTIME_LOCALHOST). So that two pods can listen on the same port, as they can
 * in Kubernetes, a bind to the wildcard goes to the pod IP and a bind to 127.0.0.1
 * to the pod's localhost (a process may bind a port on both, as Ray's dashboard
 * agent does). A connect to 127.0.0.1 or 0.0.0.0 goes to the pod's localhost if
 * something of the pod listens there on that port, else to the pod IP, where
 * wildcard listeners are. Connections to loopback addresses leave from the pod IP,
 * so peers see the pod's IP as a Kubernetes pod's peers do. IPv6 sockets get the
 * same rules for `::`, `::1` and the IPv4-mapped forms.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static struct in_addr pod_ip, pod_localhost;
static int have_pod_ip;
static int (*real_bind)(int, const struct sockaddr *, socklen_t);
static int (*real_connect)(int, const struct sockaddr *, socklen_t);

__attribute__((constructor)) static void init(void) {
    const char *ip = getenv("POD_RUNTIME_IP"), *localhost = getenv("POD_RUNTIME_LOCALHOST");
    have_pod_ip = ip && localhost && inet_pton(AF_INET, ip, &pod_ip) == 1 && inet_pton(AF_INET, localhost, &pod_localhost) == 1;
    real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    real_connect = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
}

static int is_loopback4(struct in_addr a) { return (ntohl(a.s_addr) >> 24) == 127; }
static int is_host_local4(struct in_addr a) { return a.s_addr == htonl(INADDR_ANY) || a.s_addr == htonl(INADDR_LOOPBACK); }

/* Where a bind to the wildcard (the pod IP) or to 127.0.0.1 (the pod's localhost) goes. */
static struct in_addr bind_target(struct in_addr a) { return a.s_addr == htonl(INADDR_ANY) ? pod_ip : pod_localhost; }

/* Whether a TCP socket listens, or a UDP socket is bound, on a:port (port in network order), per /proc/net. */
static int bound_on(struct in_addr a, in_port_t port, int stream) {
    char v4[32], v6[64], line[512], local[80];
    unsigned state;
    int found = 0;
    snprintf(v4, sizeof v4, "%08X:%04X", a.s_addr, ntohs(port));
    snprintf(v6, sizeof v6, "0000000000000000FFFF0000%08X:%04X", a.s_addr, ntohs(port));
    const char *files[2] = {stream ? "/proc/net/tcp" : "/proc/net/udp", stream ? "/proc/net/tcp6" : "/proc/net/udp6"};
    for (int i = 0; i < 2 && !found; i++) {
        FILE *table = fopen(files[i], "re");
        if (!table) continue;
        while (!found && fgets(line, sizeof line, table))
            if (sscanf(line, " %*d: %79s %*s %x", local, &state) == 2 && (!strcmp(local, v4) || !strcmp(local, v6)))
                found = !stream || state == 0x0A; /* TCP_LISTEN */
        fclose(table);
    }
    return found;
}

/* Where a connect to 0.0.0.0 or 127.0.0.1 goes: the pod's localhost if the pod listens there, else the pod IP. */
static struct in_addr connect_target(int fd, in_port_t port) {
    int type = SOCK_STREAM;
    socklen_t type_len = sizeof type;
    int saved = errno;
    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len);
    int local = bound_on(pod_localhost, port, type == SOCK_STREAM);
    errno = saved;
    return local ? pod_localhost : pod_ip;
}

/* The IPv4 address inside an IPv6 one, for `::` (0.0.0.0), `::1` (127.0.0.1) and ::ffff:a.b.c.d; 0 otherwise. */
static int as_ipv4(const struct in6_addr *a, struct in_addr *out) {
    if (IN6_IS_ADDR_UNSPECIFIED(a)) { out->s_addr = htonl(INADDR_ANY); return 1; }
    if (IN6_IS_ADDR_LOOPBACK(a)) { out->s_addr = htonl(INADDR_LOOPBACK); return 1; }
    if (IN6_IS_ADDR_V4MAPPED(a)) { memcpy(&out->s_addr, &a->s6_addr[12], 4); return 1; }
    return 0;
}

static void set_mapped(struct in6_addr *a, struct in_addr v4) {
    memset(a, 0, sizeof *a);
    a->s6_addr[10] = a->s6_addr[11] = 0xff;
    memcpy(&a->s6_addr[12], &v4.s_addr, 4);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    struct in_addr v4;
    if (have_pod_ip && addr && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in moved = *(const struct sockaddr_in *)addr;
        if (is_host_local4(moved.sin_addr)) {
            moved.sin_addr = bind_target(moved.sin_addr);
            return real_bind(fd, (struct sockaddr *)&moved, sizeof moved);
        }
    } else if (have_pod_ip && addr && addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 moved = *(const struct sockaddr_in6 *)addr;
        if (as_ipv4(&moved.sin6_addr, &v4) && is_host_local4(v4)) {
            set_mapped(&moved.sin6_addr, bind_target(v4));
            int saved = errno;
            if (real_bind(fd, (struct sockaddr *)&moved, sizeof moved) == 0) return 0;
            if (errno != EINVAL && errno != EADDRNOTAVAIL) return -1;
            errno = saved; /* an IPv6-only socket cannot take an IPv4 address: bind as asked */
        }
    }
    return real_bind(fd, addr, len);
}

/* Before connecting to a loopback address from an unbound socket: take the pod's address as the source. */
static void bind_source(int fd, int family) {
    struct sockaddr_storage current;
    socklen_t current_len = sizeof current;
    if (getsockname(fd, (struct sockaddr *)&current, &current_len) != 0) return;
    int saved = errno;
    if (family == AF_INET) {
        struct sockaddr_in *bound = (struct sockaddr_in *)&current;
        if (bound->sin_port != 0 || bound->sin_addr.s_addr != htonl(INADDR_ANY)) return;
        struct sockaddr_in source = {.sin_family = AF_INET, .sin_port = 0, .sin_addr = pod_ip};
        real_bind(fd, (struct sockaddr *)&source, sizeof source);
    } else {
        struct sockaddr_in6 *bound = (struct sockaddr_in6 *)&current;
        if (bound->sin6_port != 0 || !IN6_IS_ADDR_UNSPECIFIED(&bound->sin6_addr)) return;
        struct sockaddr_in6 source = {.sin6_family = AF_INET6, .sin6_port = 0};
        set_mapped(&source.sin6_addr, pod_ip);
        real_bind(fd, (struct sockaddr *)&source, sizeof source);
    }
    errno = saved;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    struct in_addr v4;
    if (have_pod_ip && addr && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in moved = *(const struct sockaddr_in *)addr;
        if (is_host_local4(moved.sin_addr)) moved.sin_addr = connect_target(fd, moved.sin_port);
        if (is_loopback4(moved.sin_addr)) {
            bind_source(fd, AF_INET);
            return real_connect(fd, (struct sockaddr *)&moved, sizeof moved);
        }
    } else if (have_pod_ip && addr && addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 moved = *(const struct sockaddr_in6 *)addr;
        if (as_ipv4(&moved.sin6_addr, &v4) && (is_host_local4(v4) || is_loopback4(v4))) {
            set_mapped(&moved.sin6_addr, is_host_local4(v4) ? connect_target(fd, moved.sin6_port) : v4);
            bind_source(fd, AF_INET6);
            return real_connect(fd, (struct sockaddr *)&moved, sizeof moved);
        }
    }
    return real_connect(fd, addr, len);
}
