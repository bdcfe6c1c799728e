-- Recency, frequency and monetary value per customer, from purchases before `as_of`.
-- The export writes customer ids as numbers; money is exact decimal so reruns are identical.
SELECT
    CAST(CAST(customer_id AS DOUBLE) AS BIGINT) AS customer_id,
    CAST(date_part('day', TIMESTAMP '${as_of}' - max(invoiced_at)) AS DOUBLE)
        AS days_since_last_purchase,
    CAST(count(DISTINCT invoice_no) AS DOUBLE) AS frequency,
    CAST(sum(quantity * CAST(unit_price AS DECIMAL(12, 3))) AS DOUBLE) AS monetary,
    min(invoiced_at) AS first_purchase,
    max(invoiced_at) AS last_purchase,
    count(*) AS lines
FROM purchase_lines
WHERE invoiced_at < TIMESTAMP '${as_of}'
GROUP BY CAST(CAST(customer_id AS DOUBLE) AS BIGINT)
