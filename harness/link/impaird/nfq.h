/* A minimal NFQUEUE binding over raw nfnetlink (linux/netfilter/nfnetlink_queue.h):
 * no library, so verdicts can be packed many to one sendmsg and packets read many
 * per recvmmsg. */
#ifndef IMPAIRD_NFQ_H
#define IMPAIRD_NFQ_H

#include <stddef.h>
#include <stdint.h>

#define NFQ_RECV_BATCH 64
#define NFQ_RECV_BUFFER (65535 + 4096)

typedef struct {
    uint32_t packet_id;
    uint32_t length;          /* the packet's full length (NFQA_CAP_LEN when truncated) */
    const unsigned char *payload;
    uint32_t payload_length;  /* what was copied: at most the copy range */
} nfq_packet_t;

typedef void (*nfq_packet_fn)(void *ctx, const nfq_packet_t *packet);

typedef struct {
    int fd;
    uint16_t queue;
    uint32_t seq;
    unsigned char *send_buffer;
    size_t send_length;
    unsigned char *recv_buffers;
    uint64_t enobufs;         /* the kernel dropped messages to us: socket buffer full */
    uint64_t netlink_errors;  /* error replies to our verdicts or config */
} nfq_t;

/* Bind `queue`, copy at most `copy_range` bytes, let the kernel hold `maxlen`. */
int nfq_open(nfq_t *nfq, uint16_t queue, uint32_t maxlen, uint32_t copy_range,
             char *err, size_t errlen);
/* Change copy range and queue length on a bound queue (no wait for the ack). */
int nfq_set_params(nfq_t *nfq, uint32_t maxlen, uint32_t copy_range);
/* Queue one verdict; sent at the next nfq_flush (or when the buffer fills). */
int nfq_verdict(nfq_t *nfq, uint32_t packet_id, uint32_t verdict);
int nfq_flush(nfq_t *nfq);
/* Read what is waiting (one recvmmsg): packets go to `fn`. Returns the number of
 * datagrams read, 0 when none were waiting, -1 on a fatal error. */
int nfq_receive(nfq_t *nfq, nfq_packet_fn fn, void *ctx);
void nfq_close(nfq_t *nfq);

#endif
