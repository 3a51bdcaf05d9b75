-- The supplier account's announcement version (SupplierAccountChanged.version): the CRM keeps the
-- highest, so a reordered or redelivered older announcement never rolls the balance back, and a
-- payments replica whose clock runs ahead cannot freeze it. NULL: held from an event without one.
ALTER TABLE supplier_accounts ADD COLUMN IF NOT EXISTS version bigint;
-- What the salesperson also needs to see on a call: credit left and whether the account is on hold.
ALTER TABLE supplier_accounts ADD COLUMN IF NOT EXISTS available_credit numeric(14,2);
ALTER TABLE supplier_accounts ADD COLUMN IF NOT EXISTS on_hold boolean;
