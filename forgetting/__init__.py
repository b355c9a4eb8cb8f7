"""forgetting: what limits the learning rate of fast CIFAR-10 ResNets: curvature or forgetting."""

__version__ = "0.1.0"
