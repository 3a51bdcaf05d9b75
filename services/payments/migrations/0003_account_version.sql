-- Every SupplierAccountChanged carries the account's announcement counter, bumped under the
-- account's row lock in the transaction that changes it: consumers keep the highest, so neither
-- a reordered delivery nor a replica with a clock ahead can roll a balance back or freeze it.
ALTER TABLE supplier_account ADD COLUMN IF NOT EXISTS announced_version bigint NOT NULL DEFAULT 0;
