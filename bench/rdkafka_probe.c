/* rdkafka_probe: the kafka_wire rows' produce and consume through librdkafka with no Python.
 *
 * bench/bench_kafka_wire.py compiles this file with gcc against Debian's librdkafka-dev headers,
 * links it to the librdkafka the confluent-kafka wheel bundles when there is one (the same
 * library as the Python rows; the C API is stable across versions; else the system's), and
 * runs it next to the confluent-kafka rows, with the same client configuration, so the rows
 * show what the server takes and feeds when the client is not Python:
 *
 *   rdkafka_probe queue   N SIZE TOPIC SERVER_PID key=value...   produce() only, no broker
 *   rdkafka_probe produce N SIZE TOPIC SERVER_PID key=value...   produce N values, then flush
 *   rdkafka_probe consume N SIZE TOPIC SERVER_PID key=value...   partition 0 from offset 0
 *
 * Every value is SIZE bytes of 'x' (the Python rows' value). The producer copies each value
 * (RD_KAFKA_MSG_F_COPY) and names its topic per call (producev), as confluent-kafka's
 * produce() does, and counts delivery reports: a run that does not deliver all N fails. The
 * consumer reads batches of up to 10,000 (rd_kafka_consume_batch_queue, what confluent-kafka's
 * consume(10000) calls) and sums every byte of every value, checked against N * SIZE * 'x'.
 * SERVER_PID (0: none) is the process whose CPU clock is read over the same window.
 * Prints one JSON object: seconds, this thread's and this process's CPU seconds, the server's.
 */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#define CONSUME_BATCH 10000

static long delivered, failed;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk, (void)opaque;
    if (m->err)
        failed++;
    else
        delivered++;
}

static double seconds(clockid_t clock) {
    struct timespec ts;
    if (clock_gettime(clock, &ts) != 0)
        return -1.0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why) {
    fprintf(stderr, "rdkafka_probe: %s: %s\n", what, why);
    exit(2);
}

/* The three clocks of a timed window: wall, this thread, this process, and the server's. */
struct clocks { double wall, thread, process, server; };

static struct clocks read_clocks(clockid_t server) {
    struct clocks c = {seconds(CLOCK_MONOTONIC), seconds(CLOCK_THREAD_CPUTIME_ID),
                       seconds(CLOCK_PROCESS_CPUTIME_ID), server ? seconds(server) : 0.0};
    return c;
}

static void print_result(const char *mode, long records, struct clocks a, struct clocks b, double flush_s) {
    printf("{\"mode\": \"%s\", \"records\": %ld, \"seconds\": %.6f, \"thread_cpu_s\": %.6f, "
           "\"process_cpu_s\": %.6f, \"server_cpu_s\": %.6f, \"flush_s\": %.6f, \"librdkafka\": \"%s\"}\n",
           mode, records, b.wall - a.wall, b.thread - a.thread, b.process - a.process, b.server - a.server,
           flush_s, rd_kafka_version_str());
}

static rd_kafka_t *client(rd_kafka_type_t type, int argc, char **argv) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    for (int i = 0; i < argc; i++) {
        char *eq = strchr(argv[i], '=');
        if (!eq)
            die(argv[i], "expected key=value");
        *eq = '\0';
        if (rd_kafka_conf_set(conf, argv[i], eq + 1, err, sizeof err) != RD_KAFKA_CONF_OK)
            die(argv[i], err);
    }
    if (type == RD_KAFKA_PRODUCER)
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
    if (!rk)
        die("rd_kafka_new", err);
    return rk;
}

/* produce() each value, polling for room when the local queue is full. */
static void produce_all(rd_kafka_t *rk, const char *topic, long n, const char *value, size_t size) {
    for (long i = 0; i < n; i++) {
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_VALUE((void *)value, size), RD_KAFKA_V_END))
               == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        if (e)
            die("produce", rd_kafka_err2str(e));
    }
}

static int consume(rd_kafka_t *rk, const char *topic, long n, size_t size, clockid_t server) {
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, topic, 0)->offset = 0;
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (e)
        die("assign", rd_kafka_err2str(e));
    rd_kafka_queue_t *queue = rd_kafka_queue_get_consumer(rk);
    rd_kafka_message_t **batch = malloc(CONSUME_BATCH * sizeof *batch);
    if (!batch)
        die("malloc", "out of memory");
    long got = 0;
    uint64_t sum = 0, nbytes = 0;
    struct clocks a = read_clocks(server);
    while (got < n && seconds(CLOCK_MONOTONIC) - a.wall < 120) {
        ssize_t k = rd_kafka_consume_batch_queue(queue, 1000, batch, CONSUME_BATCH);
        for (ssize_t i = 0; i < k; i++) {
            rd_kafka_message_t *m = batch[i];
            if (!m->err) {
                const unsigned char *p = m->payload;
                for (size_t j = 0; j < m->len; j++)
                    sum += p[j];
                nbytes += m->len;
                got++;
            }
            rd_kafka_message_destroy(m);
        }
    }
    struct clocks b = read_clocks(server);
    free(batch);
    rd_kafka_queue_destroy(queue);
    if (got < n || nbytes != (uint64_t)n * size || sum != (uint64_t)n * size * 'x') {
        fprintf(stderr, "rdkafka_probe: consumed %ld records, %llu value bytes, not %ld of %zu bytes of 'x'\n",
                got, (unsigned long long)nbytes, n, size);
        return 1;
    }
    print_result("consume", got, a, b, 0.0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 6)
        die("usage", "rdkafka_probe queue|produce|consume N SIZE TOPIC SERVER_PID [key=value...]");
    const char *mode = argv[1], *topic = argv[4];
    long n = atol(argv[2]), size = atol(argv[3]), pid = atol(argv[5]);
    if (n <= 0 || size <= 0 || size > (1 << 20) || pid < 0)
        die("usage", "N > 0, 0 < SIZE <= 1 MiB, SERVER_PID >= 0");
    clockid_t server = 0;
    if (pid && clock_getcpuclockid((pid_t)pid, &server) != 0)
        die("clock_getcpuclockid", "no such server process");
    int is_consumer = strcmp(mode, "consume") == 0;
    if (!is_consumer && strcmp(mode, "produce") != 0 && strcmp(mode, "queue") != 0)
        die(mode, "not queue, produce or consume");
    rd_kafka_t *rk = client(is_consumer ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER, argc - 6, argv + 6);
    int status = 0;
    if (is_consumer) {
        status = consume(rk, topic, n, (size_t)size, server);
        rd_kafka_consumer_close(rk);
    } else {
        char *value = malloc((size_t)size);
        if (!value)
            die("malloc", "out of memory");
        memset(value, 'x', (size_t)size);
        struct clocks a = read_clocks(server);
        produce_all(rk, topic, n, value, (size_t)size);
        struct clocks b = read_clocks(server), c = b;
        if (strcmp(mode, "produce") == 0) {
            rd_kafka_flush(rk, 120 * 1000);
            c = read_clocks(server);
            if (delivered != n) {
                fprintf(stderr, "rdkafka_probe: %ld of %ld records delivered (%ld failed)\n", delivered, n, failed);
                status = 1;
            }
        } else {
            rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        }
        if (!status)
            print_result(mode, n, a, c, c.wall - b.wall);
        free(value);
    }
    rd_kafka_destroy(rk);
    return status;
}
