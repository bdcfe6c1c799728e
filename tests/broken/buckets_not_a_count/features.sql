SELECT customer_id, count(*) AS orders, sum(amount) AS spend
FROM purchases
GROUP BY customer_id
