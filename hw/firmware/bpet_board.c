/*
 * bpet_board.c - the digitizer board's firmware: one main loop.
 *
 * The front end's words (bpet_port.h) go into a FIFO of fixed size; frames of up to 256 events
 * are packed from it (bpet_wire.c) and sent out of the UART byte by byte as it takes them; every
 * TICK word closes the open frame and sends a STATUS heartbeat at its coarse time, so the output
 * is a function of the input alone. Commands come in on the same UART (COMMAND frames,
 * hw/WIRE.md section 10); a damaged, unknown or untimely one is rejected, counted and answered,
 * never acted on. The input is pulled only while the FIFO has room: when the UART has refused
 * bytes for BPET_STALL_MS the front end is read regardless (it does not wait for a stalled
 * host), and every event that then finds the FIFO full is dropped and counted in the next
 * STATUS frame's fifo_overflows.
 *
 * Freestanding C99: no heap, no libc calls; all state in one static struct.
 */
#include "bpet_board.h"

#include "bpet_port.h"
#include "bpet_wire.h"

#define TICK_RESERVE 16u /* FIFO words only TICKs may take: a stalled board keeps its heartbeats */
#define READ_WORDS 64u   /* words read from the front end at a time */
#define RX_BYTES 64u     /* a COMMAND frame is at most 35 bytes on the wire */
#define REPLIES 8u
#define ANY_BOARD 0xFFFFu

typedef struct {
    uint8_t opcode, result;
    uint32_t cmd_seq, value;
} reply_t;

static struct {
    uint16_t board;
    uint32_t seq, clock, run;
    uint32_t events_sent, overflows, rejected;
    int running, input_ended, stop_wanted;
    /* FIFO of front-end words */
    bpet_input_t fifo[BPET_FIFO_WORDS];
    unsigned head, count;
    /* the frame on its way out */
    uint8_t tx[BPET_MAX_FRAME_BYTES];
    unsigned tx_len, tx_pos;
    uint32_t stall_start_ms;
    int stalling, stalled;
    /* command bytes since the last 0x00 */
    uint8_t rx[RX_BYTES];
    unsigned rx_len;
    int rx_overrun;
    reply_t replies[REPLIES];
    unsigned reply_head, reply_count;
    int marker_due; /* BPET_FRAME_RUN_START / _STOP to send next, or 0 */
    uint32_t enabled[(BPET_MAX_CHANNEL + 1u) / 32u];
    uint16_t threshold[BPET_MAX_CHANNEL + 1u];
    bpet_event_t frame[BPET_EVENTS_PER_FRAME];
    bpet_input_t words[READ_WORDS];
    uint8_t pending[READ_WORDS * BPET_INPUT_BYTES]; /* the front end's bytes, whole words first */
    unsigned pending_bytes;
} b;

static void reset_channels(void)
{
    unsigned i;
    for (i = 0u; i < sizeof b.enabled / sizeof b.enabled[0]; ++i) {
        b.enabled[i] = 0xFFFFFFFFu;
    }
    for (i = 0u; i <= BPET_MAX_CHANNEL; ++i) {
        b.threshold[i] = 0u;
    }
}

/* ------------------------------------------------------------------ the front end -> FIFO */

static bpet_input_t *fifo_at(unsigned k)
{
    return &b.fifo[(b.head + k) % BPET_FIFO_WORDS];
}

static int accepted(const bpet_input_t *w)
{
    return w->channel <= BPET_MAX_CHANNEL && w->adc <= BPET_MAX_ADC &&
           (b.enabled[w->channel / 32u] >> (w->channel % 32u) & 1u) &&
           w->adc >= b.threshold[w->channel];
}

static void fifo_put(const bpet_input_t *w)
{
    if (w->kind == BPET_IN_EVENT) {
        if (!accepted(w)) {
            return;
        }
        if (b.count >= BPET_FIFO_WORDS - TICK_RESERVE) {
            b.overflows++;
            return;
        }
    } else if (b.count >= BPET_FIFO_WORDS) {
        bpet_input_t *last = fifo_at(b.count - 1u);
        if (last->kind == BPET_IN_TICK) {
            last->coarse = w->coarse; /* two heartbeats with nothing between: the later one */
        }
        return;
    }
    *fifo_at(b.count++) = *w;
}

/* Up to READ_WORDS whole words of the front end's stream into b.words; returns how many. */
static unsigned input_words(void)
{
    unsigned whole, i;
    b.pending_bytes += port_input_bytes(b.pending + b.pending_bytes,
                                        (unsigned)sizeof b.pending - b.pending_bytes);
    whole = b.pending_bytes / BPET_INPUT_BYTES;
    for (i = 0u; i < whole; ++i) {
        const uint8_t *w = b.pending + i * BPET_INPUT_BYTES;
        b.words[i].coarse = (uint32_t)w[0] | ((uint32_t)w[1] << 8) | ((uint32_t)w[2] << 16) |
                            ((uint32_t)w[3] << 24);
        b.words[i].channel = (uint16_t)(w[4] | (w[5] << 8));
        b.words[i].adc = (uint16_t)(w[6] | (w[7] << 8));
        b.words[i].fine = w[8];
        b.words[i].kind = w[9];
    }
    for (i = whole * BPET_INPUT_BYTES; i < b.pending_bytes; ++i) {
        b.pending[i - whole * BPET_INPUT_BYTES] = b.pending[i];
    }
    b.pending_bytes -= whole * BPET_INPUT_BYTES;
    return whole;
}

/* Take the words the front end has now (at most what the FIFO holds, unless stalled). */
static void read_input(void)
{
    for (;;) {
        unsigned room = BPET_FIFO_WORDS - b.count;
        unsigned got, i;
        if (b.input_ended || (!b.stalled && room < READ_WORDS + TICK_RESERVE && b.running)) {
            return;
        }
        got = input_words();
        if (got == 0u) {
            return;
        }
        for (i = 0u; i < got; ++i) {
            const bpet_input_t *w = &b.words[i];
            if (w->kind == BPET_IN_END) {
                b.input_ended = 1;
                return;
            }
            if (w->kind == BPET_IN_CLOCK || !b.running) {
                b.clock = w->coarse; /* a stopped board's front end runs, its events go nowhere */
            } else {
                fifo_put(w);
            }
        }
    }
}

/* ------------------------------------------------------------------ FIFO -> frames */

static void queue_frame(size_t n)
{
    b.tx_len = (unsigned)n;
    b.tx_pos = 0u;
    b.seq++;
}

/* The next EVENTS or STATUS frame from the FIFO, when its end is known: 256 events, or the
 * events before a TICK, or (draining) whatever is left. */
static int pack_from_fifo(int draining)
{
    unsigned n = 0u;
    while (n < b.count && n < BPET_EVENTS_PER_FRAME && fifo_at(n)->kind == BPET_IN_EVENT) {
        n++;
    }
    if (n == 0u && b.count > 0u) { /* a TICK: the heartbeat */
        bpet_input_t *t = fifo_at(0u);
        b.clock = t->coarse;
        b.head = (b.head + 1u) % BPET_FIFO_WORDS;
        b.count--;
        queue_frame(bpet_pack_status(b.board, b.seq, b.clock, b.events_sent, b.overflows, 0u,
                                     b.tx, sizeof b.tx));
        return 1;
    }
    if (n == 0u || (n < BPET_EVENTS_PER_FRAME && n == b.count && !draining)) {
        return 0; /* the frame's end is not known yet */
    }
    {
        unsigned i;
        for (i = 0u; i < n; ++i) {
            const bpet_input_t *w = fifo_at(i);
            b.frame[i].coarse = w->coarse;
            b.frame[i].fine = w->fine;
            b.frame[i].channel = w->channel;
            b.frame[i].adc = w->adc;
            b.clock = w->coarse;
        }
    }
    b.head = (b.head + n) % BPET_FIFO_WORDS;
    b.count -= n;
    b.events_sent += n;
    queue_frame(bpet_pack_events(b.frame, (uint16_t)n, b.board, b.seq, b.tx, sizeof b.tx));
    return 1;
}

static void next_frame(void)
{
    if (b.reply_count > 0u) {
        reply_t *r = &b.replies[b.reply_head];
        b.reply_head = (b.reply_head + 1u) % REPLIES;
        b.reply_count--;
        queue_frame(bpet_pack_reply(b.board, b.seq, r->opcode, r->result, r->cmd_seq, r->value,
                                    b.rejected, b.tx, sizeof b.tx));
        return;
    }
    if (b.marker_due == BPET_FRAME_RUN_START) {
        b.marker_due = 0;
        queue_frame(bpet_pack_marker(BPET_FRAME_RUN_START, b.board, b.seq, b.clock, b.run, b.tx,
                                     sizeof b.tx));
        return;
    }
    if (b.running && pack_from_fifo(b.stop_wanted)) {
        return;
    }
    if (b.stop_wanted && b.count == 0u) { /* drained: the run ends here */
        b.stop_wanted = 0;
        b.running = 0;
        queue_frame(bpet_pack_marker(BPET_FRAME_RUN_STOP, b.board, b.seq, b.clock, b.run, b.tx,
                                     sizeof b.tx));
    }
}

/* ------------------------------------------------------------------ frames -> UART */

static void pump_tx(void)
{
    while (b.tx_pos < b.tx_len) {
        if (!port_uart_tx_ready()) {
            uint32_t now = port_millis();
            if (!b.stalling) {
                b.stalling = 1;
                b.stall_start_ms = now;
            } else if (now - b.stall_start_ms >= BPET_STALL_MS) {
                b.stalled = 1;
            }
            return;
        }
        port_uart_tx(b.tx[b.tx_pos++]);
        b.stalling = 0;
        b.stalled = 0;
    }
}

/* ------------------------------------------------------------------ commands */

static void reply(uint8_t opcode, uint8_t result, uint32_t cmd_seq, uint32_t value)
{
    reply_t *r;
    if (result != BPET_OK) {
        b.rejected++;
    }
    if (b.reply_count == REPLIES) {
        return; /* a host that floods commands loses replies, never data */
    }
    r = &b.replies[(b.reply_head + b.reply_count++) % REPLIES];
    r->opcode = opcode;
    r->result = result;
    r->cmd_seq = cmd_seq;
    r->value = value;
}

static uint8_t start_run(uint32_t run)
{
    if (b.running) {
        return BPET_WRONG_STATE;
    }
    read_input(); /* the front end's clock up to now: what the host wrote before commanding */
    b.running = 1;
    b.run = run;
    b.marker_due = BPET_FRAME_RUN_START;
    return BPET_OK;
}

static uint8_t stop_run(void)
{
    if (!b.running || b.stop_wanted) {
        return BPET_WRONG_STATE;
    }
    read_input(); /* every word the front end gave before the stop is sent */
    b.stop_wanted = 1;
    return BPET_OK;
}

static uint8_t set_mask(uint32_t first, uint32_t lo, uint32_t hi)
{
    if (first % 64u != 0u || first > BPET_MAX_CHANNEL) {
        return BPET_BAD_ARGUMENT;
    }
    b.enabled[first / 32u] = lo;
    b.enabled[first / 32u + 1u] = hi;
    return BPET_OK;
}

static uint8_t set_threshold(uint32_t channel, uint32_t lo, uint32_t hi)
{
    unsigned i;
    if (hi != 0u || lo > BPET_MAX_ADC || (channel > BPET_MAX_CHANNEL && channel != 0xFFFFFFFFu)) {
        return BPET_BAD_ARGUMENT;
    }
    for (i = 0u; i <= BPET_MAX_CHANNEL; ++i) {
        if (channel == 0xFFFFFFFFu || i == channel) {
            b.threshold[i] = (uint16_t)lo;
        }
    }
    return BPET_OK;
}

static void command(const bpet_control_t *c)
{
    uint8_t op = (uint8_t)(c->w0_lo & 0xFFu);
    uint8_t result;
    uint32_t value = 0u;
    if ((c->w0_lo >> 8) != 0u) {
        reply(op, BPET_BAD_ARGUMENT, c->seq, 0u);
        return;
    }
    switch (op) {
    case BPET_CMD_PING: result = BPET_OK; value = BPET_FIRMWARE_VERSION; break;
    case BPET_CMD_START: result = start_run(c->w0_hi); break;
    case BPET_CMD_STOP: result = stop_run(); break;
    case BPET_CMD_MASK: result = set_mask(c->w0_hi, c->w1_lo, c->w1_hi); break;
    case BPET_CMD_THRESHOLD: result = set_threshold(c->w0_hi, c->w1_lo, c->w1_hi); break;
    case BPET_CMD_UPTIME: result = BPET_OK; value = port_millis(); break;
    case BPET_CMD_RESET:
        result = BPET_OK;
        b.events_sent = b.overflows = b.rejected = 0u;
        break;
    default: result = BPET_UNKNOWN; break;
    }
    if (result == BPET_OK && (op == BPET_CMD_START || op == BPET_CMD_STOP)) {
        return; /* their answer is the run marker */
    }
    reply(op, result, c->seq, value);
}

static void frame_received(void)
{
    bpet_control_t c;
    if (b.rx_overrun || !bpet_unpack_control(b.rx, b.rx_len, &c) ||
        c.type != BPET_FRAME_COMMAND) {
        reply(0u, BPET_BAD_FRAME, 0u, 0u);
        return;
    }
    if (c.board == b.board || c.board == ANY_BOARD) {
        command(&c);
    }
}

static void poll_rx(void)
{
    uint8_t byte;
    while (port_uart_rx(&byte)) {
        if (byte != 0u) {
            if (b.rx_len < RX_BYTES) {
                b.rx[b.rx_len++] = byte;
            } else {
                b.rx_overrun = 1;
            }
            continue;
        }
        if (b.rx_len > 0u || b.rx_overrun) {
            frame_received();
        }
        b.rx_len = 0u;
        b.rx_overrun = 0;
    }
}

/* ------------------------------------------------------------------ the loop */

int bpet_board_main(void)
{
    port_init();
    b.board = port_board_id();
    reset_channels();
    for (;;) {
        poll_rx();
        if (!b.stop_wanted) {
            read_input(); /* after a stop: only what the front end gave before it */
        }
        if (b.tx_pos == b.tx_len) {
            b.tx_pos = b.tx_len = 0u;
            next_frame();
        }
        pump_tx();
        if (b.input_ended && !b.running && b.tx_pos == b.tx_len && b.reply_count == 0u &&
            b.marker_due == 0) {
            port_exit(0); /* the run is over and the front end has nothing more */
            return 0;
        }
    }
}
