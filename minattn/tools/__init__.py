"""The ``minattn`` command and the code behind each subcommand.

- ``cli``: the argparse wiring (``minattn`` and ``python -m minattn`` call ``cli.main``);
- ``info``: ``minattn info``, the backends, devices, kernels and versions found;
- ``gradcheck``: ``minattn gradcheck``, every op's gradient check as a table, and the
  tables of cases it (and the test suite) runs;
- ``scaling``: ``minattn scaling``, the scaling experiments run, printed and written;
- ``train/``: ``minattn train``, a tiny transformer on a toy task (tasks, config, loop,
  checkpoints, report, command);
- ``bench/``: ``minattn bench``, attention implementations timed (harness, cases, machine,
  report, command);
- ``runs``: run folders that no run destroys (atomic writes, resumable, set aside, locked,
  only minattn's own ever moved; strict JSON);
- ``options``: what each option accepts, checked before any work (usage errors, exit 2).

Nothing is imported here, so that ``minattn info`` loads only what it prints.
"""
