"""Cost-aware decoding: tier prices, tenant budgets with pacing, and per-request plans."""
