-- Invoice lines a customer analysis can trust.
--
-- Drops, by rule: guest orders (no customer_id), lines with a zero or negative price (free
-- items, stock adjustments), zero quantities, and exact duplicate lines of the export. Lines
-- whose date does not parse never get here: the source quarantines them. Keeps refunds: a cancellation invoice (`C...`) or a
-- negative quantity is flagged `is_refund`, so purchases and refunds are counted apart.
--
-- Duplicates are found on the export's own columns; the amount and the refund flag follow
-- from them, so they are worked out after, on fewer rows, and the de-duplication compares
-- (and, for a large export, sorts to disk) narrower rows.
SELECT
    invoice_no,
    stock_code,
    customer_id,
    country,
    invoiced_at,
    quantity,
    unit_price,
    quantity * unit_price AS amount,
    (starts_with(invoice_no, 'C') OR quantity < 0) AS is_refund
FROM (
    SELECT DISTINCT
        invoice_no,
        stock_code,
        CAST(customer_id AS BIGINT) AS customer_id,
        country,
        invoice_date AS invoiced_at,
        quantity,
        -- Money is exact decimal: float sums depend on the order partitions finish in.
        CAST(unit_price AS DECIMAL(12, 2)) AS unit_price
    FROM raw_transactions
    WHERE customer_id IS NOT NULL
      AND try_cast(customer_id AS BIGINT) IS NOT NULL
      AND unit_price > 0
      AND quantity <> 0
) AS distinct_lines
