-- Invoice lines a customer analysis can trust.
--
-- Drops, by rule: guest orders (no customer_id), lines with a zero or negative price (free
-- items, stock adjustments), zero quantities, and exact duplicate lines of the export. Lines
-- whose date does not parse never get here: the source quarantines them. Keeps refunds: a cancellation invoice (`C...`) or a
-- negative quantity is flagged `is_refund`, so purchases and refunds are counted apart.
SELECT DISTINCT
    invoice_no,
    stock_code,
    CAST(customer_id AS BIGINT) AS customer_id,
    country,
    invoice_date AS invoiced_at,
    quantity,
    -- Money is exact decimal: float sums depend on the order partitions finish in.
    CAST(unit_price AS DECIMAL(12, 2)) AS unit_price,
    quantity * CAST(unit_price AS DECIMAL(12, 2)) AS amount,
    (starts_with(invoice_no, 'C') OR quantity < 0) AS is_refund
FROM raw_transactions
WHERE customer_id IS NOT NULL
  AND try_cast(customer_id AS BIGINT) IS NOT NULL
  AND unit_price > 0
  AND quantity <> 0
