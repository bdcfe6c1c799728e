SELECT customer_id, cnt(*) AS orders, sum(amount) AS spend
FROM purchases
GROUP BY customer_id
