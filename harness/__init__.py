"""nixos-deploy-harness: real QEMU VMs, the NixOS backdoor, deploy-rs scenarios."""
