use rand::Rng;
use rand::seq::SliceRandom;

use crate::draw_price;

#[derive(Debug, Clone)]
pub struct Product {
    pub code: String,
    pub description: String,
    pub price: f64,
}

/// Products with a popularity skew: a few best sellers, a long tail.
pub struct Catalog {
    products: Vec<Product>,
}

const COLOURS: &[&str] = &[
    "WHITE",
    "RED",
    "PINK",
    "BLUE",
    "GREEN",
    "IVORY",
    "VINTAGE",
    "RETROSPOT",
    "POLKADOT",
];
const THINGS: &[&str] = &[
    "HANGING HEART T-LIGHT HOLDER",
    "CAKE CASES",
    "LUNCH BAG",
    "JUMBO BAG",
    "METAL LANTERN",
    "PAPER CHAIN KIT",
    "TEA CUP AND SAUCER",
    "HOT WATER BOTTLE",
    "ALARM CLOCK BAKELIKE",
    "DOORMAT",
    "CHILDRENS CUTLERY",
    "WATER BOTTLE",
    "NIGHT LIGHT",
    "BUNTING",
    "STORAGE JAR",
];
const PACKS: &[&str] = &["", "", "", "SET OF 3 ", "PACK OF 12 ", "SET/6 "];

impl Catalog {
    pub fn generate(rng: &mut impl Rng, size: usize) -> Catalog {
        let mut products = Vec::with_capacity(size);
        for index in 0..size {
            let colour = COLOURS.choose(rng).copied().unwrap_or("WHITE");
            let thing = THINGS.choose(rng).copied().unwrap_or("DOORMAT");
            let pack = PACKS.choose(rng).copied().unwrap_or("");
            // Some descriptions carry a comma or quotes, as real exports do.
            let description = match index % 17 {
                3 => format!("{pack}{colour} {thing}, ASSORTED"),
                9 => format!("{pack}\"{colour}\" {thing}"),
                _ => format!("{pack}{colour} {thing}"),
            };
            let suffix = if index % 5 == 0 { "A" } else { "" };
            products.push(Product {
                code: format!("{}{suffix}", 20000 + index * 7 % 4000 + index / 4000),
                description,
                price: draw_price(rng),
            });
        }
        Catalog { products }
    }

    pub fn pick(&self, rng: &mut impl Rng) -> &Product {
        let u: f64 = rng.r#gen();
        &self.products[((u * u) * self.products.len() as f64) as usize]
    }
}
