//! Customers with hand-written histories, written before the simulated ones, so that tests
//! can assert derived values exactly. Their expected RFM values as of 2011-12-10 (purchases
//! bucketed per day; refunds, bad dates and zero prices excluded) are worked out here.

pub struct ScriptedCustomer {
    pub id: u64,
    pub lines: &'static [ScriptedLine],
}

pub struct ScriptedLine {
    pub invoice: &'static str,
    pub stock_code: &'static str,
    pub description: &'static str,
    pub quantity: i64,
    pub at: &'static str,
    pub price: f64,
}

const fn line(
    invoice: &'static str,
    stock_code: &'static str,
    description: &'static str,
    quantity: i64,
    at: &'static str,
    price: f64,
) -> ScriptedLine {
    ScriptedLine {
        invoice,
        stock_code,
        description,
        quantity,
        at,
        price,
    }
}

pub const SCRIPTED: &[ScriptedCustomer] = &[
    // One-off buyer: one invoice of 6 x 2.10 + 12 x 0.85 on 2011-03-15.
    // frequency 0, recency 0, T 270, monetary_value 0.
    ScriptedCustomer {
        id: 90001,
        lines: &[
            line(
                "500001",
                "85123A",
                "WHITE HANGING HEART T-LIGHT HOLDER",
                6,
                "2011-03-15 10:02:00",
                2.10,
            ),
            line(
                "500001",
                "21212",
                "PACK OF 72 RETROSPOT CAKE CASES",
                12,
                "2011-03-15 10:02:00",
                0.85,
            ),
        ],
    },
    // Two orders on 2011-01-10 (30 + 20: one purchase day of 50), one on 2011-02-20 (20), a
    // partial refund of it on 2011-02-25 (-2 x 2.50), and one on 2011-06-05 (30) whose line
    // is duplicated in the export.
    // frequency 2, recency 146, T 334, monetary_value (20 + 30) / 2 = 25, refunds 5.
    ScriptedCustomer {
        id: 90002,
        lines: &[
            line(
                "500002",
                "22720",
                "SET OF 3 CAKE TINS, PANTRY DESIGN",
                10,
                "2011-01-10 09:15:00",
                3.00,
            ),
            line(
                "500003",
                "21754",
                "HOME BUILDING BLOCK WORD",
                4,
                "2011-01-10 15:30:00",
                5.00,
            ),
            line(
                "500004",
                "84879",
                "ASSORTED COLOUR BIRD ORNAMENT",
                8,
                "2011-02-20 11:00:00",
                2.50,
            ),
            line(
                "C500005",
                "84879",
                "ASSORTED COLOUR BIRD ORNAMENT",
                -2,
                "2011-02-25 12:00:00",
                2.50,
            ),
            line(
                "500006",
                "22386",
                "JUMBO BAG PINK POLKADOT",
                3,
                "2011-06-05 14:00:00",
                10.00,
            ),
            line(
                "500006",
                "22386",
                "JUMBO BAG PINK POLKADOT",
                3,
                "2011-06-05 14:00:00",
                10.00,
            ),
        ],
    },
    // 20 on 2011-09-01; a line with an impossible date; on 2011-11-20 a free item (price 0)
    // and 2 x 15.00.
    // frequency 1, recency 80, T 100, monetary_value 30.
    ScriptedCustomer {
        id: 90003,
        lines: &[
            line(
                "500007",
                "22197",
                "SMALL POPCORN HOLDER",
                5,
                "2011-09-01 10:00:00",
                4.00,
            ),
            line(
                "500008",
                "22197",
                "SMALL POPCORN HOLDER",
                100,
                "2011-02-30 10:00:00",
                1.00,
            ),
            line(
                "500009",
                "23084",
                "RABBIT NIGHT LIGHT",
                1,
                "2011-11-20 10:00:00",
                0.00,
            ),
            line(
                "500009",
                "23084",
                "RABBIT NIGHT LIGHT",
                2,
                "2011-11-20 10:00:00",
                15.00,
            ),
        ],
    },
    // 50 on 2011-11-01, and 40 on the as-of date itself, which is not before it.
    // frequency 0, recency 0, T 39, monetary_value 0.
    ScriptedCustomer {
        id: 90004,
        lines: &[
            line(
                "500010",
                "47566",
                "PARTY BUNTING",
                1,
                "2011-11-01 10:00:00",
                50.00,
            ),
            line(
                "500011",
                "47566",
                "PARTY BUNTING",
                1,
                "2011-12-10 09:00:00",
                40.00,
            ),
        ],
    },
];
