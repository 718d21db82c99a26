"""Side-by-side benchmarks of virtual_epochs against the blog post's wrapper and its peers.

Run ``python -m benchmarks`` (all, full sizes), ``python -m benchmarks --smoke`` (tiny sizes, for
CI) or ``python -m benchmarks --only resume``. Every benchmark measures its contenders in the
same run, interleaved over several rounds, and reports medians and ratios against a baseline
measured beside them: timings from another run or another machine are never compared.
"""
