-- Purchases per customer and day: several invoices on one day are one purchase occasion
-- (the lifetimes convention). Only days before the as-of date count.
SELECT
    customer_id,
    CAST(invoiced_at AS DATE) AS purchase_day,
    sum(amount) AS spend,
    count(DISTINCT invoice_no) AS invoices
FROM valid_transactions
WHERE NOT is_refund
  AND invoiced_at < DATE '${as_of}'
GROUP BY customer_id, CAST(invoiced_at AS DATE)
