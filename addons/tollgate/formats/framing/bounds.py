"""How large one frame of a stream may be, and a request body once decoded."""

# An event (or array element) larger than this is a broken stream, not something to buffer.
MAX_FRAME = 16 * 1024 * 1024
# A request body decodes to no more than this: above every provider's own limit on a request, and
# far below what a few MiB of brotli or zstd can decode to.
MAX_DECODED_BODY = 64 * 1024 * 1024
