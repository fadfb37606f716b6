from setuptools import find_packages, setup

setup(
    name="meteo_assets",
    version="0.1.0",
    description="Dagster code location for the Toulouse Métropole weather-station open data",
    packages=find_packages(exclude=["meteo_assets_tests", "meteo_assets_tests.*"]),
    package_data={"meteo_assets": ["py.typed"], "meteo_assets.dashboard": ["toulouse.json", "static/*"]},
    python_requires=">=3.10",
    install_requires=[
        # The dagster integrations pin dagster exactly: this is the set that resolves.
        "dagster==1.13.27",
        "dagster-aws==0.29.27",
        "dagster-duckdb==0.29.27",
        "dagster-duckdb-pandas==0.29.27",
        "duckdb>=1.1",
        "matplotlib>=3.8",  # the PNG plots in the Dagster UI's metadata
        "pandas>=2.1,<3",
        "plotly>=6",  # its bundled plotly.js is the dashboard's only JavaScript dependency
        "pyarrow>=15",
        "requests>=2.31",
        "urllib3>=2",
    ],
    extras_require={
        "dev": [
            "dagster-webserver==1.13.27",
            "pytest>=8",
            "dagster-postgres==0.29.27",  # the deployment-profile test
            # moto's standalone S3 server (what `moto[server]` runs, without its other services' deps)
            "moto[s3]==5.2.5",
            "flask>=3",
            "flask-cors>=4",
            "selenium>=4.20",  # drives Debian's chromium + chromedriver in the dashboard's browser test
            "ruff>=0.17",  # `make lint`: pyflakes and flake8-bandit security rules
            # the example notebooks run in the tests, headless (matplotlib is already a runtime dependency)
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
        ],
        # `make notebook`: JupyterLab, kept out of the default install
        "notebook": ["jupyterlab>=4.2", "ipykernel>=6.29"],
        # the team deployment profile (deploy/dagster.yaml): PostgreSQL instance storage
        "deploy": ["dagster-postgres==0.29.27"],
    },
)
