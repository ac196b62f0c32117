fn main() {
    println!("vigil-sim: under construction");
}
