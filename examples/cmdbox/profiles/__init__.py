"""The profiles app: users and the one-to-one profile created for each of them."""
