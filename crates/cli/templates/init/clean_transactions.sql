-- Purchases a customer analysis can trust: lines of known customers with a positive
-- price and quantity, each exact duplicate of the export kept once. Refunds (`C...`
-- invoices, negative quantities) are left out.
SELECT DISTINCT
    invoice_no,
    stock_code,
    CAST(customer_id AS BIGINT) AS customer_id,
    invoice_date AS invoiced_at,
    quantity,
    CAST(unit_price AS DECIMAL(12, 2)) AS unit_price,
    CAST(quantity * unit_price AS DECIMAL(14, 2)) AS amount
FROM raw_transactions
WHERE try_cast(customer_id AS BIGINT) IS NOT NULL
  AND NOT starts_with(invoice_no, 'C')
  AND quantity > 0
  AND unit_price > 0
