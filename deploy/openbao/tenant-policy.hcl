# OpenBao / Vault policy for ONE tenant's Transit key: the credential sealscribe holds for
# tenant {tenant} can use the key sealscribe-{tenant} and nothing else (no other tenant's
# key, no listing of keys, no export, backup or deletion of the key itself).
#
# {tenant} is a placeholder: replace every occurrence with the tenant id (t_ and 16 hex
# digits, from `sealscribe tenant create`) and load one policy per tenant, e.g.
#
#   T=t_0123456789abcdef
#   sed "s/{tenant}/$T/g" deploy/openbao/tenant-policy.hcl | bao policy write "sealscribe-$T" -
#   bao write auth/approle/role/sealscribe-$T token_policies="sealscribe-$T"
#
# It assumes the mount `transit` and the key prefix `sealscribe-` (SEALSCRIBE_TRANSIT_MOUNT,
# SEALSCRIBE_TRANSIT_KEY_PREFIX); change the paths if yours differ. The paths are exact
# names, not globs, so no tenant's policy matches a longer key name that starts with it.
# Without "delete", sealscribe's revoke rotates and trims every old version instead of
# deleting the key (deleting stays the customer's act). PRIVACY.md, "What the operator can
# still do", says what this does and does not prevent; tests/integration/
# test_transit_tenancy.py loads this very file.

# create the key, read its versions (create, status, retire)
path "transit/keys/sealscribe-{tenant}" {
  capabilities = ["create", "read", "update"]
}
path "transit/keys/sealscribe-{tenant}/rotate" {
  capabilities = ["update"]
}
# min_decryption_version / min_encryption_version (retire, revoke)
path "transit/keys/sealscribe-{tenant}/config" {
  capabilities = ["update"]
}
path "transit/keys/sealscribe-{tenant}/trim" {
  capabilities = ["update"]
}
# wrap, unwrap and rewrap data keys
path "transit/encrypt/sealscribe-{tenant}" {
  capabilities = ["update"]
}
path "transit/decrypt/sealscribe-{tenant}" {
  capabilities = ["update"]
}
path "transit/rewrap/sealscribe-{tenant}" {
  capabilities = ["update"]
}
# keyed digests (hmac/<key> and hmac/<key>/<algorithm>) and their verification
path "transit/hmac/sealscribe-{tenant}" {
  capabilities = ["update"]
}
path "transit/hmac/sealscribe-{tenant}/*" {
  capabilities = ["update"]
}
path "transit/verify/sealscribe-{tenant}" {
  capabilities = ["update"]
}
path "transit/verify/sealscribe-{tenant}/*" {
  capabilities = ["update"]
}
