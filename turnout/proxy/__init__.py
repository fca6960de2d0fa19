"""The data plane: protocol codecs, routing, filters, upstream pools, workers."""
