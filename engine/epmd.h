/* SPDX-License-Identifier: Apache-2.0 */
/*
 * EPMD protocol: message codecs, a client, and kdist's own EPMD server.
 * Requests are sent with a 2-byte length prefix; replies are not framed.
 */
#ifndef KD_EPMD_H
#define KD_EPMD_H

#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

#define KD_EPMD_DEFAULT_PORT 4369
/* Maximum length in bytes of a node name (the part before '@') on the
 * client side, where struct kd_epmd_node stores it NUL-terminated. The
 * server accepts epmd's limit of 255 UTF-8 characters. */
#define KD_EPMD_MAX_NAME 255

enum kd_epmd_op {
	KD_EPMD_ALIVE2_REQ = 120,
	KD_EPMD_ALIVE2_RESP = 121,
	KD_EPMD_ALIVE2_X_RESP = 118,
	KD_EPMD_PORT_PLEASE2_REQ = 122,
	KD_EPMD_PORT2_RESP = 119,
	KD_EPMD_NAMES_REQ = 110,
	KD_EPMD_DUMP_REQ = 100,
	KD_EPMD_KILL_REQ = 107,
	KD_EPMD_STOP_REQ = 115,
};

/* What a node registers, and what PORT2_RESP returns. */
struct kd_epmd_node {
	char name[256];
	uint16_t port;
	uint8_t node_type; /* 77 'M' normal, 72 'H' hidden */
	uint8_t protocol;  /* 0: TCP/IPv4 and every other transport */
	uint16_t high_version, low_version;
	uint8_t extra[256];
	uint16_t extra_len;
};

/* Encoders return the bytes written, length prefix included, or a
 * negative errno when @cap is too small or a field too long. */
int kd_epmd_encode_alive2_req(uint8_t *buf, size_t cap,
			      const struct kd_epmd_node *node);
int kd_epmd_encode_port_please2_req(uint8_t *buf, size_t cap, const char *name);
int kd_epmd_encode_names_req(uint8_t *buf, size_t cap);

/* Decoders return the bytes consumed, 0 if @len is too short yet, or a
 * negative errno for a malformed reply. */
int kd_epmd_decode_alive2_resp(const uint8_t *buf, size_t len, uint8_t *result,
			       uint32_t *creation);
/* @result 0 fills @node; any other value means "not registered". */
int kd_epmd_decode_port2_resp(const uint8_t *buf, size_t len, uint8_t *result,
			      struct kd_epmd_node *node);

/*
 * Client calls. Blocking, each bounded by @timeout_ms. @host is a name or
 * address, IPv4 or IPv6. Errors carry a sentence via kd_fail().
 */
/* Registers @node and leaves the registration connection open in @fd_out:
 * EPMD drops the name when it closes. */
int kd_epmd_register(const char *host, uint16_t epmd_port,
		     const struct kd_epmd_node *node, unsigned timeout_ms,
		     int *fd_out, uint32_t *creation);
/* Looks up @name; -ENOENT if it is not registered. */
int kd_epmd_port_please(const char *host, uint16_t epmd_port, const char *name,
			unsigned timeout_ms, struct kd_epmd_node *out);
/* Looks up @name as kd_epmd_port_please() does, and gives up with
 * -ECANCELED within 100 ms once *@cancel is true. */
int kd_epmd_port_please_cancel(const char *host, uint16_t epmd_port,
			       const char *name, unsigned timeout_ms,
			       const atomic_bool *cancel,
			       struct kd_epmd_node *out);
/* NAMES_REQ: writes the text EPMD returns ("name foo at port 4711\n"...)
 * into a malloc'ed, NUL-terminated @text. */
int kd_epmd_names(const char *host, uint16_t epmd_port, unsigned timeout_ms,
		  uint16_t *epmd_port_out, char **text);

/* kdist's own EPMD server: ALIVE2, PORT_PLEASE2, NAMES, DUMP. */
struct kd_epmd_server;

struct kd_epmd_server_config {
	/* 0 lets the kernel pick a free port for IPv4, and IPv6 then uses the
	 * same number; kd_epmd_server_port() returns it. */
	uint16_t port;
	int loopback_only;
	/* A client that has not registered is closed after this long without
	 * a complete request; 0 means 60000, the timeout epmd uses. */
	unsigned client_timeout_ms;
	/* Connections served at once, registered nodes included; 0 means
	 * 1024. Further connections are accepted and closed at once. */
	unsigned max_clients;
};

/* Listens on @port on IPv4 and IPv6 loopback and any address unless
 * @loopback_only. Fails with -EADDRINUSE and a clear message when the port
 * is taken. Runs its own thread. */
int kd_epmd_server_start(uint16_t port, int loopback_only,
			 struct kd_epmd_server **out);
/* Same as kd_epmd_server_start() with every setting of @cfg. */
int kd_epmd_server_start_config(const struct kd_epmd_server_config *cfg,
				struct kd_epmd_server **out);
/* Returns the port the server listens on, the kernel's pick when the
 * configured port was 0. */
uint16_t kd_epmd_server_port(const struct kd_epmd_server *srv);
/* Stops the thread, closes every socket (dropping every registration) and
 * frees @srv. NULL is ignored. */
void kd_epmd_server_stop(struct kd_epmd_server *srv);

#endif
