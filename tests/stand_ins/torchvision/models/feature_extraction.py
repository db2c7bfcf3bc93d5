def create_feature_extractor(*args, **kwargs):
    raise RuntimeError("torchvision stand-in: feature extraction is not available")


def get_graph_node_names(*args, **kwargs):
    raise RuntimeError("torchvision stand-in: feature extraction is not available")
