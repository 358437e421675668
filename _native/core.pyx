# cython: freethreading_compatible = False
"""arrowlog's native core: checksums, hashing, mapped files, the published
partition state, sparse index search, the record accumulator behind
``Producer.produce`` and the message iterator behind ``Consumer.consume``.

One compilation unit; each layer lives in its own ``core/*.pxi`` file.
"""

include "core/defs.pxi"
include "core/hashing.pxi"
include "core/mapped.pxi"
include "core/state.pxi"
include "core/statecheck.pxi"
include "core/frame.pxi"
include "core/index.pxi"
include "core/target.pxi"
include "core/accumulator.pxi"
include "core/stage.pxi"
include "core/bulkframe.pxi"
include "core/producer.pxi"
include "core/messages.pxi"
include "core/latest.pxi"
include "core/envframe.pxi"
include "core/arena.pxi"
include "core/replayview.pxi"
include "core/follow.pxi"
include "core/closing.pxi"
