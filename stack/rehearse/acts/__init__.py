"""The rehearsal's tracks, one module each: the probes (:mod:`.probes`, with the rate-limit
probe in :mod:`.rate_limits`), :mod:`.scaling`, :mod:`.deploys`, :mod:`.isolation`,
:mod:`.attacks` and :mod:`.backup`, all on :class:`.track.Track`."""
