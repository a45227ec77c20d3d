use mysql_async::prelude::*;
#[tokio::test]
async fn dbg() {
    let mut conn = tests::db::connect().await;
    for s in ["SET foreign_key_checks = 0", "CREATE DATABASE IF NOT EXISTS zz2", "USE zz2"] {
        conn.query_drop(s).await.unwrap();
    }
    let v: Option<i64> = conn.query_first("SELECT @@foreign_key_checks").await.unwrap();
    eprintln!("fkc = {v:?}");
    let r = conn.query_drop("create table t0 (id bigint auto_increment primary key, ref_t3 bigint null, constraint fk foreign key (ref_t3) references t3 (id)) engine=InnoDB").await;
    eprintln!("{r:?}");
    conn.query_drop("DROP DATABASE zz2").await.unwrap();
}
