"""Where start scripts come from: the micro image (Debian packages) and NixOS nodes (Nix)."""
