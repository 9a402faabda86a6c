"""Protocol plugins: one sub-package per protocol (its sender, its lift, its endpoint naming),
behind the contract of `base.py`. Nothing after lifting knows which protocol it handles."""
