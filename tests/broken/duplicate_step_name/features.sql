SELECT customer_id, count(*) AS orders, sum(amount) AS spend
FROM raw_transactions
GROUP BY customer_id
