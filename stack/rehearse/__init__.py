"""``pack391 rehearse``: launch day played on the local stack.

- :mod:`stack.rehearse.recording`: the recorded data (series, acts, documents), pure.
- :mod:`stack.rehearse.claims`: each claim of the spec as a pure function of a recording.
- :mod:`stack.rehearse.report`: the JSON and the self-contained HTML/SVG report, pure.
- :mod:`stack.rehearse.timeline`: the recorder (samples the stack every few seconds).
- :mod:`stack.rehearse.script`: the tracks side by side (``Rehearsal``), with their timings;
  each track's acts in :mod:`stack.rehearse.acts`, the knobs in
  :mod:`stack.rehearse.settings`, the calls in :mod:`stack.rehearse.calls`, the local
  platform's revisions in :mod:`stack.rehearse.platform`.
- :mod:`stack.rehearse.cli`: a rehearsal played, judged and reported, ``--short``'s settings;
  the command, ``pack391 rehearse [--out DIR] [--claims ...] [--short]``, is
  :mod:`stack.cli.rehearse`.
"""
