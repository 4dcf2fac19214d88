/* Raw nfnetlink for NFQUEUE: bind, params, batched verdicts, batched reads. */
#define _GNU_SOURCE
#include "nfq.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SEND_BUFFER 65536
#define SOCKET_BUFFER (16 * 1024 * 1024)
#define MSG_SPACE 256  /* room for one config or verdict message */

static unsigned char *message_start(nfq_t *nfq, uint8_t type, uint16_t flags)
{
    unsigned char *at = nfq->send_buffer + nfq->send_length;
    struct nlmsghdr *nlh = (struct nlmsghdr *)at;
    nlh->nlmsg_len = NLMSG_LENGTH(sizeof(struct nfgenmsg));
    nlh->nlmsg_type = (uint16_t)((NFNL_SUBSYS_QUEUE << 8) | type);
    nlh->nlmsg_flags = (uint16_t)(NLM_F_REQUEST | flags);
    nlh->nlmsg_seq = ++nfq->seq;
    nlh->nlmsg_pid = 0;
    struct nfgenmsg *nfg = NLMSG_DATA(nlh);
    nfg->nfgen_family = AF_UNSPEC;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = htons(nfq->queue);
    return at;
}

static void put_attr(unsigned char *message, uint16_t type, const void *data, size_t length)
{
    struct nlmsghdr *nlh = (struct nlmsghdr *)message;
    struct nlattr *attr = (struct nlattr *)(message + NLMSG_ALIGN(nlh->nlmsg_len));
    attr->nla_type = type;
    attr->nla_len = (uint16_t)(NLA_HDRLEN + length);
    memcpy((unsigned char *)attr + NLA_HDRLEN, data, length);
    nlh->nlmsg_len = NLMSG_ALIGN(nlh->nlmsg_len) + NLA_ALIGN(attr->nla_len);
}

static void message_end(nfq_t *nfq, unsigned char *message)
{
    nfq->send_length += NLMSG_ALIGN(((struct nlmsghdr *)message)->nlmsg_len);
}

int nfq_flush(nfq_t *nfq)
{
    if (nfq->send_length == 0)
        return 0;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    ssize_t sent;
    do {
        sent = sendto(nfq->fd, nfq->send_buffer, nfq->send_length, 0,
                      (struct sockaddr *)&kernel, sizeof(kernel));
    } while (sent < 0 && errno == EINTR);
    nfq->send_length = 0;
    if (sent < 0) {
        fprintf(stderr, "callwall-impaird: sending verdicts: %s\n", strerror(errno));
        nfq->netlink_errors++;
        return -1;
    }
    return 0;
}

int nfq_verdict(nfq_t *nfq, uint32_t packet_id, uint32_t verdict)
{
    if (nfq->send_length + MSG_SPACE > SEND_BUFFER && nfq_flush(nfq) < 0)
        return -1;
    unsigned char *message = message_start(nfq, NFQNL_MSG_VERDICT, 0);
    struct nfqnl_msg_verdict_hdr header = {htonl(verdict), htonl(packet_id)};
    put_attr(message, NFQA_VERDICT_HDR, &header, sizeof(header));
    message_end(nfq, message);
    return 0;
}

static void put_config(nfq_t *nfq, unsigned char *message, uint32_t maxlen, uint32_t copy_range)
{
    struct nfqnl_msg_config_params params = {htonl(copy_range), NFQNL_COPY_PACKET};
    put_attr(message, NFQA_CFG_PARAMS, &params, sizeof(params));
    uint32_t length = htonl(maxlen);
    put_attr(message, NFQA_CFG_QUEUE_MAXLEN, &length, sizeof(length));
    /* No NFQA_CFG_F_GSO: the kernel segments GSO super-packets before queueing
     * them, so rate and loss act on real packets. No FAIL_OPEN: a full queue drops. */
    (void)nfq;
}

int nfq_set_params(nfq_t *nfq, uint32_t maxlen, uint32_t copy_range)
{
    unsigned char *message = message_start(nfq, NFQNL_MSG_CONFIG, 0);
    put_config(nfq, message, maxlen, copy_range);
    message_end(nfq, message);
    return nfq_flush(nfq);
}

static void parse_packet(const struct nlmsghdr *nlh, nfq_packet_fn fn, void *ctx);

static void accept_now(void *ctx, const nfq_packet_t *packet)
{
    nfq_verdict(ctx, packet->packet_id, NF_ACCEPT);
}

static int wait_ack(nfq_t *nfq, uint32_t seq, char *err, size_t errlen)
{
    unsigned char buffer[8192];
    for (;;) {
        ssize_t got = recv(nfq->fd, buffer, sizeof(buffer), 0);
        if (got < 0) {
            if (errno == EINTR || errno == ENOBUFS)
                continue;
            snprintf(err, errlen, "reading the bind reply: %s", strerror(errno));
            return -1;
        }
        int left = (int)got;
        for (struct nlmsghdr *nlh = (struct nlmsghdr *)buffer; NLMSG_OK(nlh, left);
             nlh = NLMSG_NEXT(nlh, left)) {
            if (nlh->nlmsg_type == ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) {
                /* Queued between the bind and its ack: let it through undelayed. */
                parse_packet(nlh, accept_now, nfq);
                continue;
            }
            if (nlh->nlmsg_type != NLMSG_ERROR || nlh->nlmsg_seq != seq)
                continue;
            const struct nlmsgerr *reply = NLMSG_DATA(nlh);
            if (reply->error == 0)
                return nfq_flush(nfq) < 0 ? -1 : 0;
            snprintf(err, errlen, "binding the queue: %s%s", strerror(-reply->error),
                     reply->error == -EBUSY ? " (another process holds this queue number)" : "");
            return -1;
        }
    }
}

int nfq_open(nfq_t *nfq, uint16_t queue, uint32_t maxlen, uint32_t copy_range,
             char *err, size_t errlen)
{
    memset(nfq, 0, sizeof(*nfq));
    nfq->queue = queue;
    nfq->send_buffer = malloc(SEND_BUFFER);
    nfq->recv_buffers = malloc((size_t)NFQ_RECV_BATCH * NFQ_RECV_BUFFER);
    nfq->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (!nfq->send_buffer || !nfq->recv_buffers || nfq->fd < 0) {
        snprintf(err, errlen, "opening a netfilter netlink socket: %s", strerror(errno));
        return -1;
    }
    int size = SOCKET_BUFFER;
    /* FORCE needs CAP_NET_ADMIN, which binding a queue needs anyway. */
    if (setsockopt(nfq->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
        setsockopt(nfq->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    setsockopt(nfq->fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size));
    struct sockaddr_nl local = {.nl_family = AF_NETLINK};
    if (bind(nfq->fd, (struct sockaddr *)&local, sizeof(local)) < 0) {
        snprintf(err, errlen, "binding the netlink socket: %s", strerror(errno));
        return -1;
    }
    unsigned char *message = message_start(nfq, NFQNL_MSG_CONFIG, NLM_F_ACK);
    struct nfqnl_msg_config_cmd command = {NFQNL_CFG_CMD_BIND, 0, htons(AF_UNSPEC)};
    put_attr(message, NFQA_CFG_CMD, &command, sizeof(command));
    put_config(nfq, message, maxlen, copy_range);
    message_end(nfq, message);
    uint32_t seq = nfq->seq;
    if (nfq_flush(nfq) < 0) {
        snprintf(err, errlen, "sending the bind request: %s", strerror(errno));
        return -1;
    }
    return wait_ack(nfq, seq, err, errlen);
}

static void parse_packet(const struct nlmsghdr *nlh, nfq_packet_fn fn, void *ctx)
{
    nfq_packet_t packet = {0};
    int have_header = 0, have_cap = 0;
    size_t offset = NLMSG_SPACE(sizeof(struct nfgenmsg));
    while (offset + NLA_HDRLEN <= nlh->nlmsg_len) {
        const struct nlattr *attr = (const struct nlattr *)((const unsigned char *)nlh + offset);
        if (attr->nla_len < NLA_HDRLEN || offset + attr->nla_len > nlh->nlmsg_len)
            break;
        const unsigned char *data = (const unsigned char *)attr + NLA_HDRLEN;
        size_t length = attr->nla_len - NLA_HDRLEN;
        switch (attr->nla_type & NLA_TYPE_MASK) {
        case NFQA_PACKET_HDR:
            if (length >= sizeof(struct nfqnl_msg_packet_hdr)) {
                packet.packet_id = ntohl(((const struct nfqnl_msg_packet_hdr *)data)->packet_id);
                have_header = 1;
            }
            break;
        case NFQA_PAYLOAD:
            packet.payload = data;
            packet.payload_length = (uint32_t)length;
            break;
        case NFQA_CAP_LEN:
            if (length >= 4) {
                uint32_t value;
                memcpy(&value, data, 4);
                packet.length = ntohl(value);
                have_cap = 1;
            }
            break;
        }
        offset += NLA_ALIGN(attr->nla_len);
    }
    if (!have_header)
        return;
    if (!have_cap)
        packet.length = packet.payload_length;
    fn(ctx, &packet);
}

static void parse_datagram(nfq_t *nfq, unsigned char *buffer, size_t length, nfq_packet_fn fn,
                           void *ctx)
{
    int left = (int)length;  /* signed: NLMSG_NEXT may step past the end */
    for (struct nlmsghdr *nlh = (struct nlmsghdr *)buffer; NLMSG_OK(nlh, left);
         nlh = NLMSG_NEXT(nlh, left)) {
        if (nlh->nlmsg_type == NLMSG_ERROR) {
            const struct nlmsgerr *reply = NLMSG_DATA(nlh);
            if (reply->error != 0) {
                nfq->netlink_errors++;
                if (nfq->netlink_errors <= 10)
                    fprintf(stderr, "callwall-impaird: kernel refused message %u: %s\n",
                            nlh->nlmsg_seq, strerror(-reply->error));
            }
        } else if (nlh->nlmsg_type == ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) {
            parse_packet(nlh, fn, ctx);
        }
    }
}

int nfq_receive(nfq_t *nfq, nfq_packet_fn fn, void *ctx)
{
    struct mmsghdr messages[NFQ_RECV_BATCH];
    struct iovec vectors[NFQ_RECV_BATCH];
    memset(messages, 0, sizeof(messages));
    for (int i = 0; i < NFQ_RECV_BATCH; i++) {
        vectors[i].iov_base = nfq->recv_buffers + (size_t)i * NFQ_RECV_BUFFER;
        vectors[i].iov_len = NFQ_RECV_BUFFER;
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    int got = recvmmsg(nfq->fd, messages, NFQ_RECV_BATCH, MSG_DONTWAIT, NULL);
    if (got < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return 0;
        if (errno == ENOBUFS) {
            nfq->enobufs++;  /* packets the kernel could not hand us: they were dropped */
            return 1;
        }
        fprintf(stderr, "callwall-impaird: reading packets: %s\n", strerror(errno));
        return -1;
    }
    for (int i = 0; i < got; i++)
        parse_datagram(nfq, vectors[i].iov_base, messages[i].msg_len, fn, ctx);
    return got;
}

void nfq_close(nfq_t *nfq)
{
    if (nfq->fd >= 0) {
        nfq_flush(nfq);
        unsigned char *message = message_start(nfq, NFQNL_MSG_CONFIG, 0);
        struct nfqnl_msg_config_cmd command = {NFQNL_CFG_CMD_UNBIND, 0, htons(AF_UNSPEC)};
        put_attr(message, NFQA_CFG_CMD, &command, sizeof(command));
        message_end(nfq, message);
        nfq_flush(nfq);
        close(nfq->fd);
    }
    nfq->fd = -1;
    free(nfq->send_buffer);
    free(nfq->recv_buffers);
    nfq->send_buffer = NULL;
    nfq->recv_buffers = NULL;
}
