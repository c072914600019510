# The baseline: nothing added, so this variant's toplevel is the booted target's. The first
# deploy of every scenario deploys it: deploy-rs's rollbacks re-run the previous generation's
# deploy-rs-activate, which only a generation deploy-rs itself put there has
# (docs/deploy-rs-facts.md).
{ }
