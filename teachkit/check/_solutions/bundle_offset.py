def bundle_offset(data_offset, layer, neuron, n_neurons, payload_bytes, align):
    """Byte offset of neuron `neuron` of layer `layer` in the flash file.

    Units are stored layer after layer, each padded to a multiple of `align`, so the stride is
    the payload rounded up: ceil(payload / align) · align.
    """
    stride = (payload_bytes + align - 1) // align * align
    unit = layer * n_neurons + neuron
    return data_offset + unit * stride
