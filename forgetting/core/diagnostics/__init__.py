"""Diagnostics of a training run: what limits the learning rate, measured while training.

- `stability`: the stability edge eta*lambda of the optimiser that runs (plain SGD, heavy ball,
  Nesterov), and the sharpness ratio eta*(lambda_max + wd)/edge.
- `sharpness`: the top Hessian eigenvalue of the mean training loss at the current weights, by
  Hessian-vector products and the Lanczos method (BatchNorm in train mode, its statistics
  kept).
- `noise`: the gradient noise scale B_simple = tr(Sigma)/|G|^2 from squared gradient norms at
  two batch sizes (McCandlish et al. 2018, appendix A); `intervals`: its confidence intervals
  (Student t, Fieller).
- `events`: example-forgetting events (Toneva et al. 2019), counted on the device.

Nothing here is imported by this file: import the module you need.
"""
