# SSH public keys that may log in as the deploy user on every deployable host: the Forgejo CI
# runner's deploy key (its private half is the DEPLOY_SSH_KEY Actions secret) and the keys of the
# workstations people deploy from. One "type base64 comment" string per key, e.g.
#   "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... forgejo-ci"
# These keys are root-equivalent on the fleet (docs/fleet.md, "Trust model").
[
]
