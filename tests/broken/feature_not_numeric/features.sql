SELECT customer_id, count(*) AS orders, sum(amount) AS spend, min(country) AS first_country
FROM purchases
GROUP BY customer_id
