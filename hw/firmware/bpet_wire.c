/*
 * bpet_wire.c - bedside-pet digitizer wire protocol, version 2: the frame packer.
 * See bpet_wire.h for the interface and hw/WIRE.md for the format.
 *
 * The frame is never built in a buffer: header, payload and CRC bytes are streamed through a
 * COBS encoder straight into the caller's output, the CRC being computed on the way.
 */
#include "bpet_wire.h"

/* CRC-32, reflected polynomial 0xEDB88320: table of the CRC of each byte value. */
static const uint32_t crc_table[256] = {
    0x00000000u, 0x77073096u, 0xEE0E612Cu, 0x990951BAu, 0x076DC419u, 0x706AF48Fu,
    0xE963A535u, 0x9E6495A3u, 0x0EDB8832u, 0x79DCB8A4u, 0xE0D5E91Eu, 0x97D2D988u,
    0x09B64C2Bu, 0x7EB17CBDu, 0xE7B82D07u, 0x90BF1D91u, 0x1DB71064u, 0x6AB020F2u,
    0xF3B97148u, 0x84BE41DEu, 0x1ADAD47Du, 0x6DDDE4EBu, 0xF4D4B551u, 0x83D385C7u,
    0x136C9856u, 0x646BA8C0u, 0xFD62F97Au, 0x8A65C9ECu, 0x14015C4Fu, 0x63066CD9u,
    0xFA0F3D63u, 0x8D080DF5u, 0x3B6E20C8u, 0x4C69105Eu, 0xD56041E4u, 0xA2677172u,
    0x3C03E4D1u, 0x4B04D447u, 0xD20D85FDu, 0xA50AB56Bu, 0x35B5A8FAu, 0x42B2986Cu,
    0xDBBBC9D6u, 0xACBCF940u, 0x32D86CE3u, 0x45DF5C75u, 0xDCD60DCFu, 0xABD13D59u,
    0x26D930ACu, 0x51DE003Au, 0xC8D75180u, 0xBFD06116u, 0x21B4F4B5u, 0x56B3C423u,
    0xCFBA9599u, 0xB8BDA50Fu, 0x2802B89Eu, 0x5F058808u, 0xC60CD9B2u, 0xB10BE924u,
    0x2F6F7C87u, 0x58684C11u, 0xC1611DABu, 0xB6662D3Du, 0x76DC4190u, 0x01DB7106u,
    0x98D220BCu, 0xEFD5102Au, 0x71B18589u, 0x06B6B51Fu, 0x9FBFE4A5u, 0xE8B8D433u,
    0x7807C9A2u, 0x0F00F934u, 0x9609A88Eu, 0xE10E9818u, 0x7F6A0DBBu, 0x086D3D2Du,
    0x91646C97u, 0xE6635C01u, 0x6B6B51F4u, 0x1C6C6162u, 0x856530D8u, 0xF262004Eu,
    0x6C0695EDu, 0x1B01A57Bu, 0x8208F4C1u, 0xF50FC457u, 0x65B0D9C6u, 0x12B7E950u,
    0x8BBEB8EAu, 0xFCB9887Cu, 0x62DD1DDFu, 0x15DA2D49u, 0x8CD37CF3u, 0xFBD44C65u,
    0x4DB26158u, 0x3AB551CEu, 0xA3BC0074u, 0xD4BB30E2u, 0x4ADFA541u, 0x3DD895D7u,
    0xA4D1C46Du, 0xD3D6F4FBu, 0x4369E96Au, 0x346ED9FCu, 0xAD678846u, 0xDA60B8D0u,
    0x44042D73u, 0x33031DE5u, 0xAA0A4C5Fu, 0xDD0D7CC9u, 0x5005713Cu, 0x270241AAu,
    0xBE0B1010u, 0xC90C2086u, 0x5768B525u, 0x206F85B3u, 0xB966D409u, 0xCE61E49Fu,
    0x5EDEF90Eu, 0x29D9C998u, 0xB0D09822u, 0xC7D7A8B4u, 0x59B33D17u, 0x2EB40D81u,
    0xB7BD5C3Bu, 0xC0BA6CADu, 0xEDB88320u, 0x9ABFB3B6u, 0x03B6E20Cu, 0x74B1D29Au,
    0xEAD54739u, 0x9DD277AFu, 0x04DB2615u, 0x73DC1683u, 0xE3630B12u, 0x94643B84u,
    0x0D6D6A3Eu, 0x7A6A5AA8u, 0xE40ECF0Bu, 0x9309FF9Du, 0x0A00AE27u, 0x7D079EB1u,
    0xF00F9344u, 0x8708A3D2u, 0x1E01F268u, 0x6906C2FEu, 0xF762575Du, 0x806567CBu,
    0x196C3671u, 0x6E6B06E7u, 0xFED41B76u, 0x89D32BE0u, 0x10DA7A5Au, 0x67DD4ACCu,
    0xF9B9DF6Fu, 0x8EBEEFF9u, 0x17B7BE43u, 0x60B08ED5u, 0xD6D6A3E8u, 0xA1D1937Eu,
    0x38D8C2C4u, 0x4FDFF252u, 0xD1BB67F1u, 0xA6BC5767u, 0x3FB506DDu, 0x48B2364Bu,
    0xD80D2BDAu, 0xAF0A1B4Cu, 0x36034AF6u, 0x41047A60u, 0xDF60EFC3u, 0xA867DF55u,
    0x316E8EEFu, 0x4669BE79u, 0xCB61B38Cu, 0xBC66831Au, 0x256FD2A0u, 0x5268E236u,
    0xCC0C7795u, 0xBB0B4703u, 0x220216B9u, 0x5505262Fu, 0xC5BA3BBEu, 0xB2BD0B28u,
    0x2BB45A92u, 0x5CB36A04u, 0xC2D7FFA7u, 0xB5D0CF31u, 0x2CD99E8Bu, 0x5BDEAE1Du,
    0x9B64C2B0u, 0xEC63F226u, 0x756AA39Cu, 0x026D930Au, 0x9C0906A9u, 0xEB0E363Fu,
    0x72076785u, 0x05005713u, 0x95BF4A82u, 0xE2B87A14u, 0x7BB12BAEu, 0x0CB61B38u,
    0x92D28E9Bu, 0xE5D5BE0Du, 0x7CDCEFB7u, 0x0BDBDF21u, 0x86D3D2D4u, 0xF1D4E242u,
    0x68DDB3F8u, 0x1FDA836Eu, 0x81BE16CDu, 0xF6B9265Bu, 0x6FB077E1u, 0x18B74777u,
    0x88085AE6u, 0xFF0F6A70u, 0x66063BCAu, 0x11010B5Cu, 0x8F659EFFu, 0xF862AE69u,
    0x616BFFD3u, 0x166CCF45u, 0xA00AE278u, 0xD70DD2EEu, 0x4E048354u, 0x3903B3C2u,
    0xA7672661u, 0xD06016F7u, 0x4969474Du, 0x3E6E77DBu, 0xAED16A4Au, 0xD9D65ADCu,
    0x40DF0B66u, 0x37D83BF0u, 0xA9BCAE53u, 0xDEBB9EC5u, 0x47B2CF7Fu, 0x30B5FFE9u,
    0xBDBDF21Cu, 0xCABAC28Au, 0x53B39330u, 0x24B4A3A6u, 0xBAD03605u, 0xCDD70693u,
    0x54DE5729u, 0x23D967BFu, 0xB3667A2Eu, 0xC4614AB8u, 0x5D681B02u, 0x2A6F2B94u,
    0xB40BBE37u, 0xC30C8EA1u, 0x5A05DF1Bu, 0x2D02EF8Du,
};

/* Streaming COBS encoder with a running CRC. The caller has checked the capacity. */
typedef struct {
    uint8_t *out;
    size_t pos;      /* next free byte */
    size_t code_pos; /* where the open block's code byte goes */
    uint8_t code;    /* 1 + data bytes in the open block */
    uint32_t crc;    /* CRC register (before the final XOR) */
} writer_t;

static uint32_t crc_byte(uint32_t crc, uint8_t byte)
{
    return crc_table[(crc ^ byte) & 0xFFu] ^ (crc >> 8);
}

static void close_block(writer_t *w)
{
    w->out[w->code_pos] = w->code;
    w->code_pos = w->pos++;
    w->code = 1u;
}

static void put(writer_t *w, uint8_t byte)
{
    if (byte == 0u) {
        close_block(w);
        return;
    }
    w->out[w->pos++] = byte;
    if (++w->code == 0xFFu) {
        close_block(w);
    }
}

/* Little-endian field of n_bytes bytes, added to the CRC. */
static void put_field(writer_t *w, uint32_t value, unsigned n_bytes)
{
    unsigned i;
    for (i = 0u; i < n_bytes; ++i) {
        uint8_t byte = (uint8_t)(value >> (8u * i));
        w->crc = crc_byte(w->crc, byte);
        put(w, byte);
    }
}

static void begin(writer_t *w, uint8_t *out, uint8_t type, uint16_t board, uint32_t seq,
                  uint16_t n_words)
{
    w->out = out;
    out[0] = 0u; /* leading delimiter: ends whatever a reset or line noise left before */
    w->code_pos = 1u;
    w->pos = 2u;
    w->code = 1u;
    w->crc = 0xFFFFFFFFu;
    put_field(w, BPET_WIRE_VERSION, 1u);
    put_field(w, type, 1u);
    put_field(w, board, 2u);
    put_field(w, seq, 4u);
    put_field(w, n_words, 2u);
    put_field(w, 0u, 2u); /* reserved */
}

static size_t finish(writer_t *w)
{
    uint32_t crc = w->crc ^ 0xFFFFFFFFu;
    unsigned i;
    for (i = 0u; i < 4u; ++i) {
        put(w, (uint8_t)(crc >> (8u * i)));
    }
    w->out[w->code_pos] = w->code;
    w->out[w->pos++] = 0u; /* delimiter */
    return w->pos;
}

size_t bpet_pack_events(const bpet_event_t *ev, uint16_t n, uint16_t board, uint32_t seq,
                        uint8_t *out, size_t out_cap)
{
    writer_t w;
    uint16_t i;
    if (n > BPET_EVENTS_PER_FRAME || out == 0 || (n > 0u && ev == 0) ||
        out_cap < BPET_FRAME_BYTES_MAX((size_t)n)) {
        return 0u;
    }
    for (i = 0u; i < n; ++i) {
        if (ev[i].channel > BPET_MAX_CHANNEL || ev[i].adc > BPET_MAX_ADC) {
            return 0u;
        }
    }
    begin(&w, out, BPET_FRAME_EVENTS, board, seq, n);
    for (i = 0u; i < n; ++i) {
        put_field(&w, ev[i].coarse, 4u);                              /* bits 0-31 */
        put_field(&w, ev[i].fine, 1u);                                /* bits 32-39 */
        put_field(&w, (uint32_t)ev[i].channel | ((uint32_t)ev[i].adc << 12), 3u); /* 40-63 */
    }
    return finish(&w);
}

static size_t pack_two_words(uint8_t type, uint16_t board, uint32_t seq, uint32_t w0_lo,
                             uint32_t w0_hi, uint32_t w1_lo, uint32_t w1_hi, uint8_t *out,
                             size_t out_cap)
{
    writer_t w;
    if (out == 0 || out_cap < BPET_FRAME_BYTES_MAX(2u)) {
        return 0u;
    }
    begin(&w, out, type, board, seq, 2u);
    put_field(&w, w0_lo, 4u);
    put_field(&w, w0_hi, 4u);
    put_field(&w, w1_lo, 4u);
    put_field(&w, w1_hi, 4u);
    return finish(&w);
}

size_t bpet_pack_status(uint16_t board, uint32_t seq, uint32_t coarse, uint32_t events_sent,
                        uint32_t fifo_overflows, uint32_t flags, uint8_t *out, size_t out_cap)
{
    return pack_two_words(BPET_FRAME_STATUS, board, seq, coarse, events_sent, fifo_overflows,
                          flags, out, out_cap);
}

size_t bpet_pack_marker(uint8_t type, uint16_t board, uint32_t seq, uint32_t coarse,
                        uint32_t run, uint8_t *out, size_t out_cap)
{
    if (type != BPET_FRAME_RUN_START && type != BPET_FRAME_RUN_STOP) {
        return 0u;
    }
    return pack_two_words(type, board, seq, coarse, run, 0u, 0u, out, out_cap);
}

size_t bpet_pack_command(uint16_t board, uint32_t seq, uint8_t opcode, uint32_t a, uint64_t b,
                         uint8_t *out, size_t out_cap)
{
    return pack_two_words(BPET_FRAME_COMMAND, board, seq, opcode, a, (uint32_t)b,
                          (uint32_t)(b >> 32), out, out_cap);
}

size_t bpet_pack_reply(uint16_t board, uint32_t seq, uint8_t opcode, uint8_t result,
                       uint32_t cmd_seq, uint32_t value, uint32_t rejected, uint8_t *out,
                       size_t out_cap)
{
    return pack_two_words(BPET_FRAME_REPLY, board, seq, (uint32_t)opcode | ((uint32_t)result << 8),
                          cmd_seq, value, rejected, out, out_cap);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

int bpet_unpack_control(const uint8_t *chunk, size_t len, bpet_control_t *f)
{
    uint8_t raw[BPET_RAW_FRAME_BYTES(2u)];
    size_t i = 0u, k = 0u;
    while (i < len) {
        uint8_t code = chunk[i++];
        uint8_t j;
        if (code == 0u) {
            return 0;
        }
        for (j = 1u; j < code; ++j) {
            if (i >= len || k >= sizeof raw || chunk[i] == 0u) {
                return 0;
            }
            raw[k++] = chunk[i++];
        }
        if (code != 0xFFu && i < len) {
            if (k >= sizeof raw) {
                return 0;
            }
            raw[k++] = 0u;
        }
    }
    if (k != sizeof raw || raw[0] != BPET_WIRE_VERSION || raw[8] != 2u || raw[9] != 0u ||
        raw[10] != 0u || raw[11] != 0u || raw[1] < BPET_FRAME_STATUS ||
        raw[1] > BPET_FRAME_REPLY || bpet_crc32(0u, raw, k - 4u) != le32(raw + k - 4u)) {
        return 0;
    }
    f->type = raw[1];
    f->board = (uint16_t)(raw[2] | (raw[3] << 8));
    f->seq = le32(raw + 4);
    f->w0_lo = le32(raw + 12);
    f->w0_hi = le32(raw + 16);
    f->w1_lo = le32(raw + 20);
    f->w1_hi = le32(raw + 24);
    return 1;
}

uint32_t bpet_crc32(uint32_t crc, const uint8_t *buf, size_t len)
{
    size_t i;
    crc ^= 0xFFFFFFFFu;
    for (i = 0u; i < len; ++i) {
        crc = crc_byte(crc, buf[i]);
    }
    return crc ^ 0xFFFFFFFFu;
}

size_t bpet_event_size(void)
{
    return sizeof(bpet_event_t);
}
