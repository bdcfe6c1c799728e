-- One row per customer who bought before the as-of day: days since the last purchase,
-- purchase days (several invoices on one day are one purchase) and total spend.
WITH days AS (
    SELECT customer_id, CAST(invoiced_at AS DATE) AS purchase_day, sum(amount) AS spend
    FROM valid_transactions
    WHERE invoiced_at < DATE '${as_of}'
    GROUP BY customer_id, CAST(invoiced_at AS DATE)
)
SELECT
    customer_id,
    CAST(DATE '${as_of}' - max(purchase_day) AS BIGINT) AS days_since_last_purchase,
    count(*) AS purchase_days,
    CAST(sum(spend) AS DOUBLE) AS total_spend,
    min(purchase_day) AS first_purchase,
    max(purchase_day) AS last_purchase
FROM days
GROUP BY customer_id
