def lru_step(order, capacity, key):
    """One access to an LRU cache. `order` runs from least to most recently used.

    Returns (new_order, hit, evicted key or None); `order` itself is not changed.
    """
    new_order = list(order)                  # a copy: the caller's list stays as it was
    if key in new_order:
        new_order.remove(key)
        new_order.append(key)
        return new_order, True, None
    evicted = new_order.pop(0) if len(new_order) >= capacity else None
    new_order.append(key)
    return new_order, False, evicted
