fn main() {
    println!("vigil-billing: under construction");
}
