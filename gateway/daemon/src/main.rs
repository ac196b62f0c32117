fn main() {
    println!("vigil-gateway: under construction");
}
