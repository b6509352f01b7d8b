"""The paper's published numbers (Lu et al. 2024; CIFAR-10, ResNet-18), shown beside ours, labelled as the paper's."""

# Clean test accuracy by (regime, task, method): Table 1 (FP and PTQ) and Table 3 (QAT).
CLEAN = {
    ("FP", "fp", "fp"): 0.9495,
    ("PTQ", "1W", "bnn"): 0.7121,
    ("PTQ", "4W", "int"): 0.8530,
    ("PTQ", "8W", "int"): 0.9109,
    ("QAT", "1W", "bnn"): 0.8937,
    ("QAT", "1W1A", "bnn"): 0.8810,
    ("QAT", "1W", "bnn++"): 0.8971,
    ("QAT", "1W1A", "bnn++"): 0.8855,
    ("QAT", "4W", "int"): 0.9339,
    ("QAT", "4W4A", "int"): 0.9293,
    ("QAT", "8W", "int"): 0.9494,
    ("QAT", "8W8A", "int"): 0.9453,
}
