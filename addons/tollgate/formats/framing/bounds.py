"""How large one frame of a stream may be."""

# An event (or array element) larger than this is a broken stream, not something to buffer.
MAX_FRAME = 16 * 1024 * 1024
