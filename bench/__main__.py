"""``python -m bench``: zachot-gen's speed and memory beside its floors and peers, measured in
one run on this machine (bench/README.md). Prints a Markdown table; never asserts a time."""

from bench.run import main

raise SystemExit(main())
