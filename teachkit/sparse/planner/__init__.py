"""The offline planner: what this machine can do, and the plan that fits a memory budget.

- ``machine``    memory bandwidth on 1 and 2 threads, BLAS threads, load
- ``io_profile`` random-read bandwidth against read size and queue depth; bursts
- ``plan``       the cost model (``predict``) and the search over plans (``choose_plan``)
- ``tradeoffs``  the trade-offs the widgets of notebooks 12-14 show, as pure functions
"""
